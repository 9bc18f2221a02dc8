//! Site policy: which images a site accepts, rule by rule (what StratusLab's
//! `stratus-policy-image` did, with signatures checked here rather than
//! trusted to the server). The file format is TOML, documented in
//! docs/trust.md; [`Policy::from_trust`] builds the common case of
//! `--trust KEY_OR_CERT`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kiln_catalog::model::{Endorsement, EndorsementStatus, Entry, Status};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::endorsement::{canonical_metadata, signature_of};
use crate::error::{Error, Result};
use crate::identity::{Identity, fingerprint, read_public_key, read_text};
use crate::signature::{Signature, TrustRoots};

/// Names an endorser: an Ed25519 key (`key` fingerprint, or `key_file` whose
/// fingerprint is taken), or a certificate by `subject` and/or `issuer`
/// (issuer alone: anyone that CA certified).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndorserSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl EndorserSpec {
    pub fn matches(&self, who: &Identity) -> bool {
        match who {
            Identity::Ed25519 { fingerprint } => self
                .key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(fingerprint)),
            Identity::X509 { subject, issuer } => {
                self.key.is_none()
                    && (self.subject.is_some() || self.issuer.is_some())
                    && self.subject.as_ref().is_none_or(|s| s == subject)
                    && self.issuer.as_ref().is_none_or(|i| i == issuer)
            }
        }
    }

    fn describe(&self) -> String {
        match (&self.key, &self.subject, &self.issuer) {
            (Some(k), _, _) => k.clone(),
            (None, Some(s), Some(i)) => format!("subject {s:?} issuer {i:?}"),
            (None, Some(s), None) => format!("subject {s:?}"),
            (None, None, Some(i)) => format!("issuer {i:?}"),
            (None, None, None) => "(nobody)".into(),
        }
    }

    /// Resolves `key_file` into `key` (relative to `base`) and checks the spec names someone.
    fn resolve(&mut self, base: &Path) -> Result<()> {
        if let Some(file) = self.key_file.take() {
            let path = base.join(file);
            let key = read_public_key(&read_text(&path)?)
                .map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
            self.key = Some(fingerprint(&key));
        }
        if self.key.is_some() && (self.subject.is_some() || self.issuer.is_some()) {
            return Err(Error::Invalid(
                "an endorser is a key or a certificate name, not both".into(),
            ));
        }
        if self.key.is_none() && self.subject.is_none() && self.issuer.is_none() {
            return Err(Error::Invalid(
                "an endorser needs key, key_file, subject or issuer".into(),
            ));
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

/// A site policy (see docs/trust.md for the file format).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Endorsers whose endorsements count.
    #[serde(default)]
    pub trusted: Vec<EndorserSpec>,
    /// Endorsers whose endorsement makes an image refused outright.
    #[serde(default)]
    pub denied: Vec<EndorserSpec>,
    /// Ed25519 key fingerprints that no longer count, whatever they signed.
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// CA directory (grid layout, with CRLs) for certificate endorsers.
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// CA (or pinned signer) certificates, PEM, for certificate endorsers.
    #[serde(default)]
    pub ca_certificates: Vec<PathBuf>,
    /// When not empty, only these image ids.
    #[serde(default)]
    pub allowed_images: Vec<Uuid>,
    #[serde(default)]
    pub denied_images: Vec<Uuid>,
    /// Hex digests (sha256, sha512, sha1 or md5; an `alg:` prefix is allowed).
    #[serde(default)]
    pub denied_checksums: Vec<String>,
    /// When not empty, only these disk formats.
    #[serde(default)]
    pub allowed_formats: Vec<String>,
    #[serde(default = "yes")]
    pub refuse_expired: bool,
    #[serde(default = "yes")]
    pub refuse_deprecated: bool,
    #[serde(default = "one")]
    pub min_endorsements: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            trusted: Vec::new(),
            denied: Vec::new(),
            revoked_keys: Vec::new(),
            ca_dir: None,
            ca_certificates: Vec::new(),
            allowed_images: Vec::new(),
            denied_images: Vec::new(),
            denied_checksums: Vec::new(),
            allowed_formats: Vec::new(),
            refuse_expired: true,
            refuse_deprecated: true,
            min_endorsements: 1,
        }
    }
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// How one endorsement was judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndorsementVerdict {
    pub id: Uuid,
    pub endorser: Option<Identity>,
    pub status: EndorsementStatus,
    pub counts: bool,
    pub detail: String,
}

/// The verdict on an entry: every rule, every endorsement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub entry: Uuid,
    pub accepted: bool,
    pub rules: Vec<RuleResult>,
    pub endorsements: Vec<EndorsementVerdict>,
}

impl Report {
    /// The failed rules, one line each: the reasons for a refusal.
    pub fn reasons(&self) -> String {
        self.rules
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.rule, r.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Policy {
    /// Reads a policy file; relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = read_text(path)?;
        let mut p: Policy = toml::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        p.resolve(base)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok(p)
    }

    fn resolve(&mut self, base: &Path) -> Result<()> {
        for s in self.trusted.iter_mut().chain(self.denied.iter_mut()) {
            s.resolve(base)?;
        }
        if let Some(d) = &self.ca_dir {
            self.ca_dir = Some(base.join(d));
        }
        for c in &mut self.ca_certificates {
            *c = base.join(&*c);
        }
        Ok(())
    }

    /// `--trust FILE...`: trust these endorsers (Ed25519 `.pub` keys, or
    /// certificates: a CA certifies whoever it issued, any other certificate
    /// pins one signer), refuse expired and deprecated, one endorsement.
    pub fn from_trust(files: &[PathBuf]) -> Result<Policy> {
        let mut p = Policy::default();
        for f in files {
            let text = read_text(f)?;
            if text.contains("-----BEGIN PUBLIC KEY-----") {
                let key = read_public_key(&text)
                    .map_err(|e| Error::Key(format!("{}: {e}", f.display())))?;
                p.trusted.push(EndorserSpec {
                    key: Some(fingerprint(&key)),
                    ..Default::default()
                });
            } else if text.contains("-----BEGIN CERTIFICATE-----") {
                for cert in X509::stack_from_pem(text.as_bytes()).map_err(|e| {
                    Error::Key(format!("{}: unreadable certificate: {e}", f.display()))
                })? {
                    let Identity::X509 { subject, issuer } = Identity::of_certificate(&cert) else {
                        unreachable!("a certificate names a subject")
                    };
                    // Self-issued: a CA, trusted for whoever it certified.
                    p.trusted.push(if subject == issuer {
                        EndorserSpec {
                            issuer: Some(subject),
                            ..Default::default()
                        }
                    } else {
                        EndorserSpec {
                            subject: Some(subject),
                            issuer: Some(issuer),
                            ..Default::default()
                        }
                    });
                }
                p.ca_certificates.push(f.clone());
            } else {
                return Err(Error::Key(format!(
                    "{}: neither an Ed25519 public key nor a PEM certificate",
                    f.display()
                )));
            }
        }
        Ok(p)
    }

    /// The roots that check signatures: trusted and denied keys by
    /// fingerprint, the CA directory and certificates.
    pub fn trust_roots(&self) -> Result<TrustRoots> {
        let mut roots = TrustRoots::new();
        for s in self.trusted.iter().chain(&self.denied) {
            if let Some(k) = &s.key {
                roots.add_fingerprint(k)?;
            }
        }
        if let Some(d) = &self.ca_dir {
            roots.add_ca_dir(d)?;
        }
        for c in &self.ca_certificates {
            roots.add_file(c)?;
        }
        Ok(roots)
    }

    /// Judges `entry` and its endorsements at `now`.
    pub fn check(
        &self,
        entry: &Entry,
        endorsements: &[Endorsement],
        now: DateTime<Utc>,
    ) -> Result<Report> {
        let roots = self.trust_roots()?;
        let mut rules = Vec::new();
        let mut rule = |rule: &'static str, passed: bool, detail: String| {
            rules.push(RuleResult {
                rule,
                passed,
                detail,
            })
        };
        let id = entry.id;

        rule(
            "allowed-images",
            self.allowed_images.is_empty() || self.allowed_images.contains(&id),
            if self.allowed_images.is_empty() {
                "no list: any image".into()
            } else if self.allowed_images.contains(&id) {
                format!("{id} is on the allowed list")
            } else {
                format!("{id} is not on the allowed list")
            },
        );
        let denied = self.denied_images.contains(&id);
        rule(
            "denied-images",
            !denied,
            if denied {
                format!("{id} is on the deny list")
            } else {
                format!("{id} is not on the deny list")
            },
        );
        let format = entry.format.as_deref().unwrap_or("unknown");
        let format_ok = self.allowed_formats.is_empty()
            || self
                .allowed_formats
                .iter()
                .any(|f| f.eq_ignore_ascii_case(format));
        rule(
            "allowed-formats",
            format_ok,
            if self.allowed_formats.is_empty() {
                format!("format {format}; no list: any format")
            } else if format_ok {
                format!("format {format} is allowed")
            } else {
                format!(
                    "format {format} is not in {}",
                    self.allowed_formats.join(", ")
                )
            },
        );
        let digests = [
            ("sha256", &entry.checksums.sha256),
            ("sha512", &entry.checksums.sha512),
            ("sha1", &entry.checksums.sha1),
            ("md5", &entry.checksums.md5),
        ];
        let hit = digests.iter().find_map(|(alg, d)| {
            let d = d.as_deref()?;
            self.denied_checksums
                .iter()
                .any(|x| {
                    let x = x.rsplit(':').next().unwrap_or(x);
                    x.eq_ignore_ascii_case(d)
                })
                .then(|| format!("{alg} {d}"))
        });
        rule(
            "denied-checksums",
            hit.is_none(),
            match &hit {
                Some(h) => format!("{h} is on the deny list"),
                None => "no digest of the image is on the deny list".into(),
            },
        );
        let status = entry.effective_status(now);
        rule(
            "published",
            matches!(
                status,
                Status::Active | Status::Deprecated | Status::Expired
            ),
            format!("status {}", status.as_str()),
        );
        let expired = status == Status::Expired;
        rule(
            "refuse-expired",
            !(self.refuse_expired && expired),
            match (expired, entry.valid_until) {
                (true, Some(t)) => format!("expired at {}", t.to_rfc3339()),
                (_, Some(t)) => format!("valid until {}", t.to_rfc3339()),
                (_, None) => "no expiry".into(),
            } + if self.refuse_expired {
                ""
            } else {
                " (not enforced)"
            },
        );
        let deprecated = status == Status::Deprecated;
        rule(
            "refuse-deprecated",
            !(self.refuse_deprecated && deprecated),
            if deprecated {
                format!(
                    "deprecated: {}{}",
                    entry.deprecated.as_deref().unwrap_or("no reason given"),
                    if self.refuse_deprecated {
                        ""
                    } else {
                        " (not enforced)"
                    }
                )
            } else {
                "not deprecated".into()
            },
        );

        let verdicts = self.judge(entry, endorsements, &roots);
        let denied_by: Vec<String> = verdicts
            .iter()
            .filter_map(|v| {
                let who = v.endorser.as_ref()?;
                self.denied
                    .iter()
                    .any(|s| s.matches(who))
                    .then(|| who.to_string())
            })
            .collect();
        rule(
            "denied-endorsers",
            denied_by.is_empty(),
            if denied_by.is_empty() {
                "no endorsement by a denied endorser".into()
            } else {
                format!("endorsed by denied {}", denied_by.join(", "))
            },
        );
        let counted = verdicts.iter().filter(|v| v.counts).count() as u32;
        let why_not: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.counts)
            .map(|v| format!("{}: {}", v.id, v.detail))
            .collect();
        rule(
            "min-endorsements",
            counted >= self.min_endorsements,
            format!(
                "{counted} trusted endorsement(s), {} required{}",
                self.min_endorsements,
                if why_not.is_empty() {
                    String::new()
                } else {
                    format!("; not counted: {}", why_not.join("; "))
                }
            ),
        );
        let accepted = rules.iter().all(|r| r.passed);
        Ok(Report {
            entry: id,
            accepted,
            rules,
            endorsements: verdicts,
        })
    }

    fn judge(
        &self,
        entry: &Entry,
        endorsements: &[Endorsement],
        roots: &TrustRoots,
    ) -> Vec<EndorsementVerdict> {
        let doc = canonical_metadata(entry);
        endorsements
            .iter()
            .map(|e| {
                let (endorser, counts, detail) = match &doc {
                    Err(err) => (None, false, err.to_string()),
                    Ok(doc) => match signature_of(e) {
                        Err(err) => (None, false, err.to_string()),
                        Ok(sig) => self.judge_one(doc, &sig, e.status, roots),
                    },
                };
                EndorsementVerdict {
                    id: e.id,
                    endorser,
                    status: e.status,
                    counts,
                    detail,
                }
            })
            .collect()
    }

    fn judge_one(
        &self,
        doc: &[u8],
        sig: &Signature,
        status: EndorsementStatus,
        roots: &TrustRoots,
    ) -> (Option<Identity>, bool, String) {
        let who = match sig.verify_integrity(doc) {
            Ok(who) => who,
            Err(_) => {
                return (
                    None,
                    false,
                    "does not match the entry's metadata (tampered, or changed after it was endorsed)"
                        .into(),
                );
            }
        };
        let some = Some(who.clone());
        if let Identity::Ed25519 { fingerprint } = &who
            && self
                .revoked_keys
                .iter()
                .any(|k| k.eq_ignore_ascii_case(fingerprint))
        {
            return (some, false, format!("revoked key {fingerprint}"));
        }
        match status {
            EndorsementStatus::Revoked => {
                return (some, false, format!("revoked by its endorser {who}"));
            }
            EndorsementStatus::Deprecated if self.refuse_deprecated => {
                return (some, false, format!("deprecated by its endorser {who}"));
            }
            _ => {}
        }
        if self.denied.iter().any(|s| s.matches(&who)) {
            return (some, false, format!("denied endorser {who}"));
        }
        let Some(spec) = self.trusted.iter().find(|s| s.matches(&who)) else {
            return (some, false, format!("unknown signer {who}"));
        };
        match roots.verify(doc, sig) {
            Ok(_) => (some, true, format!("trusted: {}", spec.describe())),
            Err(e) => (some, false, e.to_string()),
        }
    }
}
