//! The signatures the providers compute, from their documentation. Deliberately not the
//! service's own code: the tests sign with these and the service verifies with its own, so a
//! mistake on either side fails a test.
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `X-Twilio-Signature` for a request to `url` with these form parameters: base64 of
/// HMAC-SHA1 keyed with the auth token over the URL and every parameter's name and value,
/// sorted by name.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The Telegram Login Widget's `hash` of these fields: hex of HMAC-SHA256, keyed with
/// SHA-256 of the bot token, over the `key=value` lines sorted by key.
pub fn telegram_login_hash(bot_token: &str, fields: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    lines.sort();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&Sha256::digest(bot_token.as_bytes())).expect("any key");
    mac.update(lines.join("\n").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signatures_match_the_documented_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn the_login_hash_does_not_depend_on_the_order_of_the_fields() {
        let a = telegram_login_hash("1:T", &[("id", "5"), ("auth_date", "9")]);
        let b = telegram_login_hash("1:T", &[("auth_date", "9"), ("id", "5")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }
}
