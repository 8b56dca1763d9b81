//! Kaspi as this process uses it: the client (the live API, or the built-in sandbox served
//! under `/kaspi-sandbox` by this same process) and the guard of `/kaspi/callback/`.
use crate::settings::{KaspiMode, Secret, Settings};
use ipnet::IpNet;
use kaspi::{KaspiClient, KaspiConfig};
use kaspi_sandbox::Sandbox;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where the sandbox is mounted.
pub const SANDBOX_PREFIX: &str = "/kaspi-sandbox";

/// Who may call `/kaspi/callback/`.
pub struct CallbackGuard {
    pub user: String,
    pub password: Secret,
    pub allow: Vec<IpNet>,
}

impl CallbackGuard {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Compares the presented credentials in constant time.
    pub fn credentials_match(&self, user: &str, password: &str) -> bool {
        crate::auth::same_secret(
            &format!("{}\u{0}{}", self.user, self.password.expose()),
            &format!("{user}\u{0}{password}"),
        )
    }
}

pub struct Kaspi {
    pub client: KaspiClient,
    /// The sandbox, in sandbox mode.
    pub sandbox: Option<Sandbox>,
    pub guard: CallbackGuard,
}

/// Sets Kaspi up for a process listening on `addr`.
pub fn setup(settings: &Settings, addr: SocketAddr) -> anyhow::Result<Kaspi> {
    let k = &settings.kaspi;
    let timeout_attempts = |mut c: KaspiConfig| {
        c.timeout = k.timeout;
        c.attempts = k.attempts.max(1);
        c.requests_per_second = k.requests_per_second.max(1);
        if let Some(t) = &k.device_token {
            c.device_token = t.clone();
        }
        if let Some(b) = &k.organization_bin {
            c.organization_bin = b.clone();
        }
        c
    };
    match k.mode {
        KaspiMode::Live => {
            let missing: Vec<&str> = [
                ("KASPI_API_URL", k.api_url.is_none()),
                ("KASPI_API_KEY", k.api_key.is_none()),
                ("KASPI_CALLBACK_USER", k.callback_user.is_none()),
                ("KASPI_CALLBACK_PASSWORD", k.callback_password.is_none()),
                ("KASPI_CALLBACK_ALLOW_IPS", k.callback_allow_ips.is_empty()),
            ]
            .into_iter()
            .filter_map(|(key, absent)| absent.then_some(key))
            .collect();
            let (Some(url), Some(key), Some(user), Some(password), true) = (
                &k.api_url,
                &k.api_key,
                &k.callback_user,
                &k.callback_password,
                missing.is_empty(),
            ) else {
                anyhow::bail!(
                    "KASPI_MODE=live (the default in production mode) needs {}; \
                     KASPI_MODE=sandbox serves the built-in Kaspi sandbox instead",
                    missing.join(", ")
                );
            };
            let config = timeout_attempts(KaspiConfig::new(url.clone(), key.expose()));
            Ok(Kaspi {
                client: KaspiClient::new(config)?,
                sandbox: None,
                guard: CallbackGuard {
                    user: user.clone(),
                    password: password.clone(),
                    allow: k.callback_allow_ips.clone(),
                },
            })
        }
        KaspiMode::Sandbox => {
            // Anyone who reaches a sandbox payment page can press Pay and confirm a stay for
            // free; so the sandbox serves strangers only when the operator says so.
            let exposed = settings.is_production() || !addr.ip().is_loopback();
            if exposed && !settings.allow_sandbox_payments {
                anyhow::bail!(
                    "KASPI_MODE=sandbox is refused {}: anyone who reaches a sandbox payment page \
                     can confirm a booking without paying. Configure live Kaspi (KASPI_MODE=live \
                     with the KASPI_* settings), or set ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1 for a demo",
                    if settings.is_production() {
                        "in production mode (DATABASE_URL=postgres://…)".to_string()
                    } else {
                        format!("on {addr}, which is not a loopback address")
                    }
                );
            }
            let loopback = match addr.ip() {
                ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip => ip,
            };
            let local = SocketAddr::new(loopback, addr.port());
            let public = settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            let api_key = hex::encode(rand::random::<[u8; 16]>());
            let user = k
                .callback_user
                .clone()
                .unwrap_or_else(|| "kaspi-sandbox".into());
            let password = k
                .callback_password
                .clone()
                .unwrap_or_else(|| Secret::new(hex::encode(rand::random::<[u8; 16]>())));
            let sandbox = Sandbox::new(api_key.clone());
            if exposed {
                tracing::warn!(
                    listen = %addr,
                    production = settings.is_production(),
                    "KASPI SANDBOX PAYMENTS ARE ON (ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1): no money \
                     moves and anyone with a payment link can confirm a booking; never for real guests"
                );
                sandbox.warn_on_every_link();
            }
            sandbox.set_public_url(format!("{public}{SANDBOX_PREFIX}"));
            sandbox.set_callback(kaspi_sandbox::Callback {
                url: format!("http://{local}/kaspi/callback/"),
                credentials: Some((user.clone(), password.expose().to_string())),
            });
            let config = timeout_attempts(KaspiConfig::new(
                format!("http://{local}{SANDBOX_PREFIX}"),
                api_key,
            ));
            let allow = if k.callback_allow_ips.is_empty() {
                vec![
                    "127.0.0.0/8".parse().expect("CIDR"),
                    "::1/128".parse().expect("CIDR"),
                ]
            } else {
                k.callback_allow_ips.clone()
            };
            Ok(Kaspi {
                client: KaspiClient::new(config)?,
                sandbox: Some(sandbox),
                guard: CallbackGuard {
                    user,
                    password,
                    allow,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str]) -> CallbackGuard {
        CallbackGuard {
            user: "kaspi".into(),
            password: Secret::new("s3cret"),
            allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_allow_list_takes_cidrs_and_mapped_addresses() {
        let g = guard(&["10.0.0.0/8", "194.187.247.152/32"]);
        assert!(g.allows("10.1.2.3".parse().unwrap()));
        assert!(g.allows("194.187.247.152".parse().unwrap()));
        assert!(g.allows("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!g.allows("127.0.0.1".parse().unwrap()));
        assert!(!g.allows("194.187.247.153".parse().unwrap()));
    }

    #[test]
    fn credentials_must_match_exactly() {
        let g = guard(&[]);
        assert!(g.credentials_match("kaspi", "s3cret"));
        assert!(!g.credentials_match("kaspi", "s3cret "));
        assert!(!g.credentials_match("kasp", "is3cret"));
        assert!(!g.credentials_match("", ""));
    }
}
