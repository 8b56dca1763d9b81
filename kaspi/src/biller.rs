//! Kaspi's biller protocol: how Kaspi asks us about an account (`check`) and tells us it took
//! money for it (`pay`), and how we answer.
//!
//! A notification is `command=check|pay`, `txn_id`, `account`, `sum`, `txn_date`, as a query
//! string or a form. [`Notification::parse`] turns those fields into a typed notification once,
//! at the edge; whatever does not parse is a [`Malformed`] request, which either gets a biller
//! answer of its own ([`Malformed::answer`]) or is not a notification at all. The answer is
//! JSON: `{txn_id, result, sum, prv_txn_id, comment}`, `result` being a [`ResultCode`].
use domain::Kzt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The longest `txn_id` and `account` we take (the store's key columns hold this much).
pub const MAX_ID_LEN: usize = 64;

/// What Kaspi asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// May the payer pay this account, and how much is due? Kaspi takes no money yet.
    Check,
    /// Kaspi took the money for this account.
    Pay,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Check => "check",
            Command::Pay => "pay",
        }
    }

    pub fn parse(text: &str) -> Option<Command> {
        match text {
            "check" => Some(Command::Check),
            "pay" => Some(Command::Pay),
            _ => None,
        }
    }
}

/// The protocol's result codes. On the wire a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum ResultCode {
    /// 0: the account can be paid (check), the payment is accepted (pay).
    Ok,
    /// 1: no such account.
    NotFound,
    /// 2: the account was cancelled; Kaspi takes no money.
    Cancelled,
    /// 3: the account is paid already.
    AlreadyPaid,
    /// 4: being processed; Kaspi asks again.
    InProgress,
    /// 5: any other error (a wrong sum, a failure on our side).
    Error,
}

impl ResultCode {
    pub fn code(self) -> u8 {
        match self {
            ResultCode::Ok => 0,
            ResultCode::NotFound => 1,
            ResultCode::Cancelled => 2,
            ResultCode::AlreadyPaid => 3,
            ResultCode::InProgress => 4,
            ResultCode::Error => 5,
        }
    }

    /// Kaspi notifies again after these (4, and 5 which may be a failure on our side); any
    /// other answer ends the conversation about that `txn_id`.
    pub fn is_retried_by_kaspi(self) -> bool {
        matches!(self, ResultCode::InProgress | ResultCode::Error)
    }
}

impl From<ResultCode> for u8 {
    fn from(r: ResultCode) -> u8 {
        r.code()
    }
}

/// A result code outside 0–5.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a biller result code (0 to 5)")]
pub struct UnknownResultCode(pub u8);

impl TryFrom<u8> for ResultCode {
    type Error = UnknownResultCode;

    fn try_from(code: u8) -> Result<Self, UnknownResultCode> {
        Ok(match code {
            0 => ResultCode::Ok,
            1 => ResultCode::NotFound,
            2 => ResultCode::Cancelled,
            3 => ResultCode::AlreadyPaid,
            4 => ResultCode::InProgress,
            5 => ResultCode::Error,
            other => return Err(UnknownResultCode(other)),
        })
    }
}

impl std::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// A biller notification from Kaspi, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub command: Command,
    /// Kaspi's id of this transaction; repeats of it get the first final answer.
    pub txn_id: String,
    /// The booking's short code or id, as the payer entered it.
    pub account: String,
    pub sum: Kzt,
    /// Kaspi's own timestamp (`YYYYMMDDHHMMSS`), as sent; nothing is decided on it.
    pub txn_date: Option<String>,
}

/// A request to the callback that is not a well-formed notification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A required field is absent or blank.
    #[error("{0} is required")]
    Missing(&'static str),
    /// `txn_id` or `account` is longer than [`MAX_ID_LEN`].
    #[error("txn_id and account are at most {MAX_ID_LEN} characters")]
    TooLong,
    /// A `command` other than `check` and `pay`.
    #[error("unknown command {command:?}")]
    UnknownCommand { txn_id: String, command: String },
    /// A `sum` that is not a whole number of tenge.
    #[error("sum {text:?} is not a whole number of tenge")]
    Sum { txn_id: String, text: String },
}

impl Malformed {
    /// The biller answer for a request that names its transaction (result 5, which Kaspi does
    /// not pay on); `None` for one without the fields of a notification at all.
    pub fn answer(&self) -> Option<Answer> {
        match self {
            Malformed::Missing(_) | Malformed::TooLong => None,
            Malformed::UnknownCommand { txn_id, .. } => {
                Some(Answer::new(txn_id, ResultCode::Error, "unknown command"))
            }
            Malformed::Sum { txn_id, text } => Some(Answer::new(
                txn_id,
                ResultCode::Error,
                format!("sum {text} is not a whole number of tenge"),
            )),
        }
    }
}

impl Notification {
    /// Reads a notification from its query or form fields (surrounding blanks ignored).
    pub fn parse(params: &HashMap<String, String>) -> Result<Notification, Malformed> {
        let field = |name: &'static str| {
            params
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .ok_or(Malformed::Missing(name))
        };
        let command = field("command")?;
        let txn_id = field("txn_id")?;
        let account = field("account")?;
        let sum = field("sum")?;
        if txn_id.len() > MAX_ID_LEN || account.len() > MAX_ID_LEN {
            return Err(Malformed::TooLong);
        }
        let Some(command) = Command::parse(command) else {
            return Err(Malformed::UnknownCommand {
                txn_id: txn_id.to_string(),
                command: command.to_string(),
            });
        };
        let Some(sum) = parse_sum(sum) else {
            return Err(Malformed::Sum {
                txn_id: txn_id.to_string(),
                text: sum.to_string(),
            });
        };
        Ok(Notification {
            command,
            txn_id: txn_id.to_string(),
            account: account.to_string(),
            sum,
            txn_date: params.get("txn_date").cloned(),
        })
    }
}

/// `"15000"`, `"15000.00"` → 15 000 tenge; fractions of a tenge or anything else → `None`.
pub fn parse_sum(text: &str) -> Option<Kzt> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b == b'0')
        || whole.len() > 15
    {
        return None;
    }
    whole.parse().ok().map(Kzt)
}

/// What we answer Kaspi.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub txn_id: String,
    pub result: ResultCode,
    /// The amount due (check) or taken (pay), whole tenge.
    pub sum: Option<Kzt>,
    /// Our id for the payment.
    pub prv_txn_id: Option<String>,
    pub comment: String,
}

impl Answer {
    pub fn new(txn_id: &str, result: ResultCode, comment: impl Into<String>) -> Answer {
        Answer {
            txn_id: txn_id.to_string(),
            result,
            sum: None,
            prv_txn_id: None,
            comment: comment.into(),
        }
    }

    /// Names the payment the answer is about: its amount and our id for it.
    pub fn with_payment(mut self, sum: Kzt, prv_txn_id: String) -> Answer {
        self.sum = Some(sum);
        self.prv_txn_id = Some(prv_txn_id);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sums_are_whole_tenge() {
        assert_eq!(parse_sum("15000"), Some(Kzt(15_000)));
        assert_eq!(parse_sum(" 15000.00 "), Some(Kzt(15_000)));
        assert_eq!(parse_sum("15000.5"), None);
        assert_eq!(parse_sum("-5"), None);
        assert_eq!(parse_sum(""), None);
        assert_eq!(parse_sum("1e5"), None);
    }

    #[test]
    fn a_notification_parses_once_into_types() {
        let n = Notification::parse(&params(&[
            ("command", "pay"),
            ("txn_id", " 9001 "),
            ("account", "ABCDE12345"),
            ("sum", "15000.00"),
            ("txn_date", "20261127120000"),
        ]))
        .unwrap();
        assert_eq!(
            n,
            Notification {
                command: Command::Pay,
                txn_id: "9001".into(),
                account: "ABCDE12345".into(),
                sum: Kzt(15_000),
                txn_date: Some("20261127120000".into()),
            }
        );
    }

    #[test]
    fn malformed_notifications_say_what_is_wrong() {
        let base = [
            ("command", "check"),
            ("txn_id", "1"),
            ("account", "A"),
            ("sum", "10"),
        ];
        for missing in ["command", "txn_id", "account", "sum"] {
            let mut p = params(&base);
            p.insert(missing.into(), "  ".into());
            assert_eq!(Notification::parse(&p), Err(Malformed::Missing(missing)));
            p.remove(missing);
            assert_eq!(Notification::parse(&p), Err(Malformed::Missing(missing)));
        }
        let mut p = params(&base);
        p.insert("account".into(), "A".repeat(MAX_ID_LEN + 1));
        assert_eq!(Notification::parse(&p), Err(Malformed::TooLong));
        assert_eq!(Malformed::TooLong.answer(), None);

        let mut p = params(&base);
        p.insert("command".into(), "refund".into());
        let err = Notification::parse(&p).unwrap_err();
        let answer = err.answer().unwrap();
        assert_eq!(
            (answer.result, answer.comment.as_str()),
            (ResultCode::Error, "unknown command")
        );

        let mut p = params(&base);
        p.insert("sum".into(), "10.5".into());
        let answer = Notification::parse(&p).unwrap_err().answer().unwrap();
        assert_eq!(answer.result, ResultCode::Error);
        assert_eq!(answer.txn_id, "1");
        assert_eq!(answer.sum, None);
    }

    #[test]
    fn answers_keep_their_wire_shape() {
        let a = Answer::new("7", ResultCode::AlreadyPaid, "already paid")
            .with_payment(Kzt(500), "abc".into());
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"txn_id": "7", "result": 3, "sum": 500, "prv_txn_id": "abc",
                "comment": "already paid"})
        );
        assert_eq!(serde_json::from_value::<Answer>(json).unwrap(), a);
        assert!(serde_json::from_value::<ResultCode>(serde_json::json!(6)).is_err());
        for code in 0..=5u8 {
            assert_eq!(ResultCode::try_from(code).unwrap().code(), code);
        }
    }
}
