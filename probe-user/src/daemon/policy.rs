//! Who may probe what, and what is never shown.
//!
//! A policy file (JSON, `probe daemon --policy FILE`) maps client
//! identities (a TLS client certificate's subject CN or a DNS/URI SAN;
//! `local` for the root-only unix socket, `anonymous` for plain TCP) to what
//! they may probe: process uids, cgroup path prefixes, binary path globs,
//! and capture features (locals, returns, stack, a byte budget):
//!
//! ```json
//! { "identities": {
//!     "alice": { "uids": [1000], "cgroups": ["/system.slice/api.service"],
//!                "binaries": ["/srv/*"], "locals": false, "stack": true, "max_bytes": 1024,
//!                "strings": false },
//!     "local": {} },
//!   "redact": ["password", "token", "secret", "key", "authorization"] }
//! ```
//!
//! A missing list means "any"; a missing feature means allowed. An
//! identity the file does not name may probe nothing. Without a policy file
//! every client may probe everything (the unix socket is root-only).
//!
//! Capture features: `"strings": false` keeps the contents of strings and
//! byte slices in the kernel (see [`Rule::strings`]).
//!
//! Redaction: a value whose name (argument, local, result, struct field or
//! map key) has one of the `redact` words as a *word* of its own is
//! replaced by `{"@redacted": "<word>"}` in every hit the daemon sends or
//! stores (and exports). Names are split into words at `_`, `-`, `.`,
//! spaces and camelCase humps (`apiKey`, `api_key`, `X-Api-Key`,
//! `APIKey` → `api`, `key`), compared case-insensitively, a plural `s`
//! allowed (`tokens`); a redact word of several words matches them
//! adjacent or run together (`api_key` matches `apiKey`, `ApiKey` and
//! `apikey`). So `key` hides `apiKey` and `keyID` but not `monkey` or
//! `keyboard`. A word with `*` is a glob over the whole name instead
//! (`*key*` brings substring matching back, `pass*` catches `passwd`).
//! The default words are above; `"redact": []` turns it off.

use std::{collections::HashMap, path::Path};

use serde_json::Value;

use super::proto::BreakpointSpec;

/// Names redacted unless the policy says otherwise.
pub const DEFAULT_REDACT: &[&str] = &["password", "token", "secret", "key", "authorization"];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("policy file {path}: {msg}")]
    Invalid { path: String, msg: String },
}

/// What one identity may do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rule {
    pub uids: Option<Vec<u32>>,
    pub cgroups: Option<Vec<String>>,
    pub binaries: Option<Vec<String>>,
    pub locals: bool,
    pub returns: bool,
    pub stack: bool,
    pub max_bytes: Option<u32>,
    /// May see the contents of strings and byte slices. When not, the
    /// identity's breakpoints are still allowed, but planned so that the
    /// kernel never reads those bytes (lengths are still shown), and their
    /// conditions may not look into strings.
    pub strings: bool,
}

/// The daemon's policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `None`: no policy file, everything allowed.
    rules: Option<HashMap<String, Rule>>,
    pub redact: Redactor,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: None,
            redact: Redactor::new(DEFAULT_REDACT.iter().map(|s| s.to_string()).collect()),
        }
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|msg| PolicyError::Invalid { path: p, msg })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = HashMap::new();
        let ids = v
            .get("identities")
            .and_then(Value::as_object)
            .ok_or("no \"identities\" object")?;
        for (id, r) in ids {
            let r = r
                .as_object()
                .ok_or_else(|| format!("identity {id:?}: expected an object"))?;
            for k in r.keys() {
                if ![
                    "uids",
                    "cgroups",
                    "binaries",
                    "locals",
                    "returns",
                    "stack",
                    "max_bytes",
                    "strings",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!("identity {id:?}: unknown setting {k:?}"));
                }
            }
            let strings = |k: &str| -> Result<Option<Vec<String>>, String> {
                r.get(k)
                    .map(|v| {
                        v.as_array()
                            .and_then(|a| {
                                a.iter()
                                    .map(|s| s.as_str().map(str::to_owned))
                                    .collect::<Option<Vec<_>>>()
                            })
                            .ok_or_else(|| {
                                format!("identity {id:?}: {k} must be a list of strings")
                            })
                    })
                    .transpose()
            };
            let flag = |k: &str| -> Result<bool, String> {
                r.get(k).map_or(Ok(true), |v| {
                    v.as_bool()
                        .ok_or_else(|| format!("identity {id:?}: {k} must be true or false"))
                })
            };
            let uids = r
                .get("uids")
                .map(|v| {
                    v.as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|u| u.as_u64().map(|u| u as u32))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| format!("identity {id:?}: uids must be a list of numbers"))
                })
                .transpose()?;
            let max_bytes = r
                .get("max_bytes")
                .map(|v| {
                    v.as_u64()
                        .map(|n| n as u32)
                        .ok_or("max_bytes must be a number")
                })
                .transpose()?;
            rules.insert(
                id.clone(),
                Rule {
                    uids,
                    cgroups: strings("cgroups")?,
                    binaries: strings("binaries")?,
                    locals: flag("locals")?,
                    returns: flag("returns")?,
                    stack: flag("stack")?,
                    max_bytes,
                    strings: flag("strings")?,
                },
            );
        }
        let redact = match v.get("redact") {
            None => Policy::default().redact,
            Some(r) => Redactor::new(
                r.as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or("redact must be a list of strings")?,
            ),
        };
        Ok(Policy {
            rules: Some(rules),
            redact,
        })
    }

    /// Is there a policy file (else everything is allowed)?
    pub fn enforced(&self) -> bool {
        self.rules.is_some()
    }

    /// Applies `owner`'s capture restrictions that narrow a breakpoint
    /// rather than refuse it (today: no strings). Call after [`Policy::check`]
    /// granted it, and again whenever a stored breakpoint is restored (the
    /// policy may have changed). Only ever narrows: a client may ask for
    /// less itself.
    pub fn narrow(&self, owner: &str, spec: &mut BreakpointSpec) {
        if let Some(rule) = self.rules.as_ref().and_then(|r| r.get(owner)) {
            spec.withhold_strings |= !rule.strings;
        }
    }

    /// May a client known by `identities` (its names, most specific first)
    /// add this breakpoint? `Ok`: the identity the policy knows it by (the
    /// breakpoint's owner); `Err` says why not, for the client.
    pub fn check(&self, identities: &[String], spec: &BreakpointSpec) -> Result<String, String> {
        let Some(rules) = &self.rules else {
            return Ok(identities.first().cloned().unwrap_or_default());
        };
        let (who, rule) = identities
            .iter()
            .find_map(|i| rules.get(i).map(|r| (i, r)))
            .ok_or_else(|| format!("the policy grants {} nothing", describe(identities)))?;
        let refuse = |what: String| Err(format!("the policy does not let {who} {what}"));
        if spec.locals && !rule.locals {
            return refuse("capture locals".into());
        }
        if spec.returns && !rule.returns {
            return refuse("probe returns".into());
        }
        if spec.stack > 0 && !rule.stack {
            return refuse("record stacks".into());
        }
        if let Some(max) = rule.max_bytes {
            if spec.max_bytes == 0 || spec.max_bytes > max {
                return refuse(format!(
                    "capture more than {max} bytes per hit (use --max-bytes {max})"
                ));
            }
        }
        let exe = if spec.pid != 0 {
            let pid = spec.pid;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|_| format!("no process with pid {pid}"))?;
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                .ok_or_else(|| format!("cannot read the uid of pid {pid}"))?;
            if let Some(uids) = &rule.uids {
                if !uids.contains(&uid) {
                    return refuse(format!("probe pid {pid}: it runs as uid {uid}"));
                }
            }
            if let Some(prefixes) = &rule.cgroups {
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                let path = cg
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("")
                    .to_owned();
                if !prefixes.iter().any(|p| path.starts_with(p.as_str())) {
                    return refuse(format!(
                        "probe pid {pid}: its cgroup {path:?} is outside {prefixes:?}"
                    ));
                }
            }
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        } else {
            if rule.uids.is_some() || rule.cgroups.is_some() {
                return refuse(
                    "probe a --binary (it fires in every process running it, whatever its uid or cgroup); name a --pid".into(),
                );
            }
            spec.binary.clone()
        };
        if let Some(globs) = &rule.binaries {
            if !globs.iter().any(|g| glob(g, &exe)) {
                return refuse(format!("probe {exe}"));
            }
        }
        Ok(who.clone())
    }
}

fn describe(identities: &[String]) -> String {
    match identities {
        [] => "this client".into(),
        [one] => format!("{one:?}"),
        many => format!("any of {many:?}"),
    }
}

/// `*` (any run of characters, `/` included) and `?` (one character).
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Replaces secret-like values in hits.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// The configured words, lowercase, with how each matches.
    words: Vec<(String, Matcher)>,
}

/// How one redact word matches a name.
#[derive(Clone, Debug)]
enum Matcher {
    /// A glob over the whole (lowercase) name.
    Glob,
    /// The word's own words run together (`api_key` → `apikey`): matched
    /// against runs of adjacent words of the name, run together too.
    Words(String),
}

/// The words of a name, lowercase: split at anything not a letter or
/// digit, between letters and digits, and at camelCase humps (`XMLHttp`
/// → `xml`, `http`).
pub fn name_words(name: &str) -> Vec<String> {
    let c: Vec<char> = name.chars().collect();
    let mut words = vec![];
    let mut cur = String::new();
    for i in 0..c.len() {
        let ch = c[i];
        if !ch.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() {
            // `cur` is not empty: the character before is a letter or digit of it.
            let prev = c[i - 1];
            let hump = (prev.is_lowercase() && ch.is_uppercase())
                // The last capital of an acronym starts the next word: "APIKey".
                || (prev.is_uppercase()
                    && ch.is_uppercase()
                    && c.get(i + 1).is_some_and(|n| n.is_lowercase()))
                || (prev.is_ascii_digit() != ch.is_ascii_digit());
            if hump {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(ch.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

impl Redactor {
    pub fn new(words: Vec<String>) -> Self {
        Redactor {
            words: words
                .into_iter()
                .map(|w| w.to_lowercase())
                .filter(|w| !w.is_empty())
                .filter_map(|w| {
                    let m = if w.contains('*') || w.contains('?') {
                        Matcher::Glob
                    } else {
                        let joined = name_words(&w).concat();
                        if joined.is_empty() {
                            return None;
                        }
                        Matcher::Words(joined)
                    };
                    Some((w, m))
                })
                .collect(),
        }
    }

    /// The redact word that `name` matches, if any.
    pub fn matches(&self, name: &str) -> Option<&str> {
        if name.starts_with('@') {
            return None; // Probe's own markers
        }
        if self.words.is_empty() {
            return None;
        }
        let words = name_words(name);
        let lower = name.to_lowercase();
        self.words
            .iter()
            .find(|(w, m)| match m {
                Matcher::Glob => glob(w, &lower),
                Matcher::Words(joined) => (0..words.len()).any(|i| {
                    let mut run = String::new();
                    for w in &words[i..] {
                        run.push_str(w);
                        if run.len() > joined.len() + 1 {
                            return false;
                        }
                        if run == *joined
                            || (run.len() == joined.len() + 1
                                && run.starts_with(joined.as_str())
                                && run.ends_with('s'))
                        {
                            return true;
                        }
                    }
                    false
                }),
            })
            .map(|(w, _)| w.as_str())
    }

    /// Redacts a hit (a `probe attach` JSON line); returns it unchanged when nothing matched.
    pub fn line(&self, json: String) -> String {
        if self.words.is_empty() {
            return json;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&json) else {
            return json;
        };
        if self.hit(&mut v) {
            v.to_string()
        } else {
            json
        }
    }

    /// Redacts a hit as a JSON tree (its `args`, `locals` and `returns`);
    /// `true` if anything was.
    pub fn hit(&self, v: &mut Value) -> bool {
        let mut changed = false;
        if self.words.is_empty() {
            return false;
        }
        for section in ["args", "locals", "returns"] {
            if let Some(vals) = v.get_mut(section) {
                changed |= self.walk(vals);
            }
        }
        changed
    }

    /// Redacts the named members of an object (recursively); `true` if any.
    fn walk(&self, v: &mut Value) -> bool {
        let mut changed = false;
        match v {
            Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if let Some(w) = self.matches(k) {
                        *val = serde_json::json!({ "@redacted": w });
                        changed = true;
                    } else {
                        changed |= self.walk(val);
                    }
                }
            }
            Value::Array(a) => {
                for val in a {
                    changed |= self.walk(val);
                }
            }
            _ => {}
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("/srv/*", "/srv/api/bin/server"));
        assert!(glob("/srv/*/server", "/srv/api/server"));
        assert!(glob("/usr/bin/ap?", "/usr/bin/api"));
        assert!(!glob("/srv/*", "/usr/srv/x"));
        assert!(!glob("/srv/a?", "/srv/a"));
        assert!(glob("*", ""));
    }

    #[test]
    fn redaction_by_name_at_any_depth() {
        let r = Policy::default().redact;
        let hit = r#"{"v":1,"args":{"key":"k5","req":{"Headers":{"Authorization":"Bearer x","Accept":"*/*"},"db":{"Password":"hunter2","host":"h"}},"n":3,"items":[{"token":"t"}]}}"#;
        let v: Value = serde_json::from_str(&r.line(hit.to_owned())).unwrap();
        let a = &v["args"];
        assert_eq!(a["key"], serde_json::json!({"@redacted": "key"}));
        assert_eq!(
            a["req"]["Headers"]["Authorization"],
            serde_json::json!({"@redacted": "authorization"})
        );
        assert_eq!(a["req"]["Headers"]["Accept"], "*/*");
        assert_eq!(
            a["req"]["db"]["Password"],
            serde_json::json!({"@redacted": "password"})
        );
        assert_eq!(a["req"]["db"]["host"], "h");
        assert_eq!(
            a["items"][0]["token"],
            serde_json::json!({"@redacted": "token"})
        );
        assert_eq!(a["n"], 3);
        let none = Redactor::new(vec![]);
        assert_eq!(none.line(hit.to_owned()), hit);
    }

    #[test]
    fn names_split_into_words() {
        assert_eq!(name_words("apiKey"), ["api", "key"]);
        assert_eq!(name_words("X-Api-Key"), ["x", "api", "key"]);
        assert_eq!(name_words("APIKey"), ["api", "key"]);
        assert_eq!(name_words("db.password_hash"), ["db", "password", "hash"]);
        assert_eq!(name_words("oauth2Token"), ["oauth", "2", "token"]);
        assert_eq!(name_words("HTTPServer"), ["http", "server"]);
        assert_eq!(name_words("monkey"), ["monkey"]);
        assert!(name_words("__").is_empty());
    }

    #[test]
    fn redaction_matches_whole_words_not_substrings() {
        let r = Policy::default().redact;
        for secret in [
            "key",
            "Key",
            "apiKey",
            "api_key",
            "X-Api-Key",
            "APIKey",
            "keyID",
            "keys",
            "authToken",
            "AUTH_TOKEN",
            "refresh.token",
            "tokens",
            "Password",
            "dbPasswordHash",
            "client_secret",
            "Authorization",
        ] {
            assert!(r.matches(secret).is_some(), "{secret} must be redacted");
        }
        for plain in [
            "monkey",
            "keyboard",
            "donkeys",
            "tokenizer",
            "secretary",
            "passwordless_", // one word: "passwordless"
            "turkey",
            "n",
            "@len",
        ] {
            assert_eq!(r.matches(plain), None, "{plain} must not be redacted");
        }
        assert_eq!(r.matches("apiKey"), Some("key"));
        // Several words in one redact entry: adjacent or run together.
        let r = Redactor::new(vec!["api_key".into(), "sessionid".into()]);
        for m in [
            "apiKey",
            "ApiKey",
            "apikey",
            "X-API-KEY",
            "sessionID",
            "session_id",
        ] {
            assert!(r.matches(m).is_some(), "{m}");
        }
        for m in ["key", "api", "apiKeyboard", "session"] {
            assert_eq!(r.matches(m), None, "{m}");
        }
        // A glob is matched against the whole name: substring matching on request.
        let r = Redactor::new(vec!["*key*".into(), "pass*".into()]);
        assert_eq!(r.matches("monkey"), Some("*key*"));
        assert_eq!(r.matches("passwd"), Some("pass*"));
        assert_eq!(r.matches("bypass"), None);
    }

    #[test]
    fn policy_checks_features_and_binaries() {
        let p = Policy::parse(
            r#"{"identities":{"alice":{"binaries":["/srv/*"],"locals":false,"max_bytes":1024},"ops":{"uids":[0]}},"redact":["pin"]}"#,
        )
        .unwrap();
        let spec = |bin: &str| BreakpointSpec {
            binary: bin.into(),
            funcs: vec!["main.f".into()],
            max_bytes: 512,
            ..Default::default()
        };
        let alice = ["alice".to_owned()];
        assert_eq!(p.check(&alice, &spec("/srv/api")), Ok("alice".to_owned()));
        let e = p.check(&alice, &spec("/usr/bin/other")).unwrap_err();
        assert!(e.contains("alice") && e.contains("/usr/bin/other"), "{e}");
        let e = p
            .check(
                &alice,
                &BreakpointSpec {
                    locals: true,
                    ..spec("/srv/api")
                },
            )
            .unwrap_err();
        assert!(e.contains("capture locals"), "{e}");
        assert!(p
            .check(
                &alice,
                &BreakpointSpec {
                    max_bytes: 4096,
                    ..spec("/srv/api")
                }
            )
            .unwrap_err()
            .contains("--max-bytes 1024"));
        assert!(p
            .check(&["mallory".to_owned()], &spec("/srv/api"))
            .unwrap_err()
            .contains("grants \"mallory\" nothing"));
        // A uid-restricted identity must name a process.
        assert!(p
            .check(&["ops".to_owned()], &spec("/srv/api"))
            .unwrap_err()
            .contains("--pid"));
        let me = BreakpointSpec {
            pid: std::process::id(),
            funcs: vec!["main.f".into()],
            ..Default::default()
        };
        let uid = unsafe { libc::getuid() };
        assert_eq!(p.check(&["ops".to_owned()], &me).is_ok(), uid == 0);
        assert_eq!(p.redact.matches("PIN_code"), Some("pin"));
        assert!(Policy::parse(r#"{"identities":{"x":{"uid":[1]}}}"#)
            .unwrap_err()
            .contains("unknown setting"));
    }
}
