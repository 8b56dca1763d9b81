//! Canonical JSON (keys sorted by their bytes, no whitespace: `scan::write_canonical`) made
//! straight from JSON text, without building a `serde_json::Value`: what verify and the
//! notary do for every stored payload and metadata.
//!
//! Only the common shapes are handled here: strings without escapes are copied as they are
//! (serde_json writes such a string back unchanged), strings with escapes and numbers other
//! than short integers go through serde_json itself, so every byte equals the `Value` path's.
//! Anything else (invalid JSON, deep nesting) gives `None`, and the caller takes the `Value`
//! path, which gives the same bytes or the error.

/// The canonical form of one JSON text, and where its top-level `hash` member is.
pub struct Canonical {
    /// `out[start..end]` is the top-level member `"hash":…` (the last one, when the text
    /// repeats the key, as serde_json keeps the last).
    pub hash_member: Option<(usize, usize)>,
}

/// Nesting beyond this goes to the `Value` path (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

/// One member of an object being written: its key (a range of the input without the quotes,
/// or a decoded key) and where `"key":value` was written.
#[derive(Clone, Copy)]
struct Member {
    key: Key,
    begin: usize,
    end: usize,
}

#[derive(Clone, Copy)]
enum Key {
    /// `input[start..end]`, no escapes.
    Raw(usize, usize),
    /// `decoded[i]`.
    Decoded(usize),
}

/// Buffers kept from one text to the next (per thread), so that a row costs no allocations.
#[derive(Default)]
struct Scratch {
    /// The members of the objects being written, innermost last.
    members: Vec<Member>,
    decoded: Vec<String>,
    /// An unsorted object's members as written, while they are written again in order.
    written: Vec<u8>,
    order: Vec<usize>,
    kept: Vec<usize>,
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
    scratch: Scratch,
    hash_member: Option<(usize, usize)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Appends the canonical form of `text` to `out` (`None`: use the `Value` path; `out` is
/// then left as it was).
pub fn write(text: &str, out: &mut Vec<u8>) -> Option<Canonical> {
    let start = out.len();
    let mut p = Parser {
        input: text.as_bytes(),
        at: 0,
        scratch: SCRATCH.take(),
        hash_member: None,
    };
    p.scratch.members.clear();
    p.scratch.decoded.clear();
    let done = p.whitespace().and_then(|_| p.value(out, 0)).and_then(|_| {
        p.whitespace();
        (p.at == p.input.len()).then_some(())
    });
    SCRATCH.set(std::mem::take(&mut p.scratch));
    match done {
        Some(()) => Some(Canonical {
            hash_member: p.hash_member,
        }),
        None => {
            out.truncate(start);
            None
        }
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn whitespace(&mut self) -> Option<()> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
        Some(())
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => {
                let (start, end, escaped) = self.string()?;
                self.write_string(start, end, escaped, out)
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let end = self.at + word.len();
        (self.input.get(self.at..end)? == word).then(|| {
            out.extend_from_slice(word);
            self.at = end;
        })
    }

    /// A number token: short integers as they are (serde_json reads them as integers and
    /// writes the same digits), the rest through serde_json.
    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let start = self.at;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let token = &self.input[start..self.at];
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        let plain = !digits.is_empty()
            && digits.len() <= 18
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1)
            && token != b"-0";
        if plain {
            out.extend_from_slice(token);
        } else {
            let n: serde_json::Number = serde_json::from_slice(token).ok()?;
            serde_json::to_writer(&mut *out, &n).ok()?;
        }
        Some(())
    }

    /// A string token at `at` (which is `"`): its range with the quotes, and whether it has
    /// escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            match *self.input.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        Some((start, self.at, escaped))
    }

    fn write_string(
        &self,
        start: usize,
        end: usize,
        escaped: bool,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        if escaped {
            let s: String = serde_json::from_slice(&self.input[start..end]).ok()?;
            serde_json::to_writer(&mut *out, &s).ok()?;
        } else {
            out.extend_from_slice(&self.input[start..end]);
        }
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.at += 1;
        out.push(b'[');
        self.whitespace();
        if self.peek()? == b']' {
            self.at += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.whitespace();
            self.value(out, depth + 1)?;
            self.whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    out.push(b',');
                }
                b']' => {
                    self.at += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn key_bytes<'k>(&'k self, key: &Key) -> &'k [u8] {
        match *key {
            Key::Raw(start, end) => &self.input[start..end],
            Key::Decoded(i) => self.scratch.decoded[i].as_bytes(),
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.at += 1;
        let start = out.len();
        out.push(b'{');
        let base = self.scratch.members.len();
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            out.push(b'}');
            return Some(());
        }
        loop {
            self.whitespace();
            if self.peek()? != b'"' {
                return None;
            }
            let (ks, ke, escaped) = self.string()?;
            let key = if escaped {
                let s: String = serde_json::from_slice(&self.input[ks..ke]).ok()?;
                self.scratch.decoded.push(s);
                Key::Decoded(self.scratch.decoded.len() - 1)
            } else {
                Key::Raw(ks + 1, ke - 1)
            };
            self.expect(b':')?;
            self.whitespace();
            if self.scratch.members.len() > base {
                out.push(b',');
            }
            let begin = out.len();
            self.write_string(ks, ke, escaped, out)?;
            out.push(b':');
            self.value(out, depth + 1)?;
            self.scratch.members.push(Member {
                key,
                begin,
                end: out.len(),
            });
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    break;
                }
                _ => return None,
            }
        }
        let sorted = self.scratch.members[base..]
            .windows(2)
            .all(|w| self.key_bytes(&w[0].key) < self.key_bytes(&w[1].key));
        if sorted {
            out.push(b'}');
            if depth == 0 {
                self.hash_member = self.scratch.members[base..]
                    .iter()
                    .rev()
                    .find(|m| self.key_bytes(&m.key) == b"hash")
                    .map(|m| (m.begin, m.end));
            }
        } else {
            // Written in the text's order: again, sorted by key, the last of equal keys kept.
            let mut written = std::mem::take(&mut self.scratch.written);
            written.clear();
            written.extend_from_slice(&out[start..]);
            out.truncate(start + 1);
            let mut order = std::mem::take(&mut self.scratch.order);
            order.clear();
            order.extend(base..self.scratch.members.len());
            order.sort_by(|a, b| {
                self.key_bytes(&self.scratch.members[*a].key)
                    .cmp(self.key_bytes(&self.scratch.members[*b].key))
            });
            let mut kept = std::mem::take(&mut self.scratch.kept);
            kept.clear();
            for &i in &order {
                match kept.last() {
                    Some(&last)
                        if self.key_bytes(&self.scratch.members[last].key)
                            == self.key_bytes(&self.scratch.members[i].key) =>
                    {
                        // The sort is stable: `i` came later in the text.
                        *kept.last_mut().expect("just seen") = i;
                    }
                    _ => kept.push(i),
                }
            }
            for (n, &i) in kept.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                let m = self.scratch.members[i];
                let begin = out.len();
                out.extend_from_slice(&written[m.begin - start..m.end - start]);
                if depth == 0 && self.key_bytes(&m.key) == b"hash" {
                    self.hash_member = Some((begin, out.len()));
                }
            }
            out.push(b'}');
            self.scratch.written = written;
            self.scratch.order = order;
            self.scratch.kept = kept;
        }
        self.scratch.members.truncate(base);
        Some(())
    }
}
