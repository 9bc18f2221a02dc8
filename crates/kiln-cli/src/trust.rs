//! `kiln key gen`, `kiln sign`, `kiln verify`, `kiln endorse`, `kiln policy
//! check`, and the trust options of `kiln pull` and `kiln push` (docs/trust.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_catalog::model::{Endorsement, EndorsementStatus, Entry};
use kiln_trust::endorsement::{canonical_metadata, status_statement};
use kiln_trust::identity::{generate_key, write_key_pair};
use kiln_trust::policy::{Policy, Report};
use kiln_trust::{Signature, Signer, TrustRoots};
use serde::Serialize;
use uuid::Uuid;

use crate::market::Remote;
use crate::output::EXIT_NEGATIVE;

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Ed25519 keys: `kiln key gen NAME` writes NAME.key (0600) and NAME.pub.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a document: a detached Ed25519 or CMS (X.509) signature.
    Sign(SignArgs),
    /// Verify a detached signature against trusted keys, certificates or a CA directory.
    Verify(VerifyArgs),
    /// Endorse a marketplace entry (sign its canonical metadata), or
    /// deprecate/revoke your endorsement.
    Endorse(EndorseArgs),
    /// Site policy: explain, rule by rule, whether an entry is accepted.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a new Ed25519 key pair and print its fingerprint.
    Gen {
        /// Path prefix: writes NAME.key and NAME.pub.
        name: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// How to sign: an Ed25519 key, or a certificate and its key.
#[derive(Args, Clone)]
pub struct SigningKey {
    /// Ed25519 key (NAME.key), or the private key of --cert.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// X.509 certificate (PEM) to sign with, CMS style.
    #[arg(long, value_name = "CERT")]
    pub cert: Option<PathBuf>,
}

impl SigningKey {
    pub fn signer(&self) -> anyhow::Result<Signer> {
        Ok(Signer::load(&self.key, self.cert.as_deref())?)
    }
}

#[derive(Args)]
pub struct SignArgs {
    file: PathBuf,
    #[command(flatten)]
    key: SigningKey,
    /// Where to write the signature.
    #[arg(short, long, value_name = "SIG")]
    output: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    file: PathBuf,
    signature: PathBuf,
    #[command(flatten)]
    roots: RootArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RootArgs {
    /// Trust this Ed25519 public key or certificate (repeatable).
    #[arg(long, value_name = "KEY_OR_CERT")]
    trust: Vec<PathBuf>,
    /// Trust the CAs (and apply the CRLs) of this directory.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct EndorseArgs {
    id: Uuid,
    #[command(flatten)]
    key: SigningKey,
    /// Deprecate this endorsement (yours) instead of endorsing.
    #[arg(long, value_name = "ENDORSEMENT", conflicts_with = "revoke")]
    deprecate: Option<Uuid>,
    /// Revoke this endorsement (yours) instead of endorsing.
    #[arg(long, value_name = "ENDORSEMENT")]
    revoke: Option<Uuid>,
    /// Why, for --deprecate and --revoke.
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    remote: Remote,
}

/// Where a site's policy comes from: a file, or `--trust` for the common case.
#[derive(Args, Clone, Default)]
pub struct PolicyArgs {
    /// The site policy file (docs/trust.md).
    #[arg(long, value_name = "FILE", conflicts_with = "trust")]
    pub policy: Option<PathBuf>,
    /// Trust these endorsers (Ed25519 .pub or PEM certificate; repeatable),
    /// refuse expired and deprecated entries.
    #[arg(long, value_name = "KEY_OR_CERT")]
    pub trust: Vec<PathBuf>,
}

impl PolicyArgs {
    pub fn policy(&self) -> anyhow::Result<Option<Policy>> {
        Ok(match (&self.policy, self.trust.is_empty()) {
            (Some(p), _) => Some(Policy::load(p)?),
            (None, false) => Some(Policy::from_trust(&self.trust)?),
            (None, true) => None,
        })
    }
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Judge an entry; exit 0 accepted, 1 refused.
    Check {
        id: Uuid,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        remote: Remote,
    },
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An entry's endorsements, as the server lists them with the entry.
pub fn endorsements_of(entry: &Entry) -> anyhow::Result<Vec<Endorsement>> {
    entry
        .endorsements
        .iter()
        .map(|v| serde_json::from_value(v.clone()).context("reading an endorsement"))
        .collect()
}

/// Judges `entry` with `policy` now.
pub fn judge(policy: &Policy, entry: &Entry) -> anyhow::Result<Report> {
    Ok(policy.check(entry, &endorsements_of(entry)?, chrono::Utc::now())?)
}

/// Prints a report rule by rule (stderr when `to_stderr`, for pull).
pub fn explain(report: &Report, to_stderr: bool) {
    let out = |s: String| {
        if to_stderr {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    for r in &report.rules {
        out(format!(
            "{:<5} {:<18} {}",
            if r.passed { "ok" } else { "FAIL" },
            r.rule,
            r.detail
        ));
    }
    for e in &report.endorsements {
        out(format!(
            "      endorsement {} ({}): {}",
            e.id,
            e.status.as_str(),
            e.detail
        ));
    }
    out(format!(
        "{} {}",
        report.entry,
        if report.accepted {
            "accepted"
        } else {
            "refused"
        }
    ));
}

pub fn run(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TrustCommand::Key(KeyCommand::Gen { name, json }) => {
            let key = generate_key()?;
            let (secret, public) = write_key_pair(&name, &key)?;
            let id = Signer::Ed25519(key).identity();
            if json {
                print_json(&serde_json::json!({
                    "identity": id, "key": secret, "public_key": public,
                }))?;
            } else {
                println!("{id}");
                eprintln!("kiln: wrote {} and {}", secret.display(), public.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Sign(args) => {
            let signer = args.key.signer()?;
            let doc = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let sig = signer.sign(&doc)?;
            write_atomic(&args.output, &sig.to_bytes())?;
            if args.json {
                print_json(&serde_json::json!({
                    "signer": signer.identity(), "signature": args.output,
                }))?;
            } else {
                eprintln!(
                    "kiln: signed {} as {}",
                    args.file.display(),
                    signer.identity()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Verify(args) => verify(args),
        TrustCommand::Endorse(args) => runtime()?.block_on(endorse(args)),
        TrustCommand::Policy(PolicyCommand::Check { id, policy, remote }) => {
            runtime()?.block_on(async move {
                let Some(policy) = policy.policy()? else {
                    bail!("give --policy FILE or --trust KEY_OR_CERT");
                };
                let entry = remote.client()?.entry(id).await?;
                let report = judge(&policy, &entry)?;
                if remote.json {
                    print_json(&report)?;
                } else {
                    explain(&report, false);
                }
                Ok(if report.accepted {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_NEGATIVE)
                })
            })
        }
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut roots = TrustRoots::new();
    for f in &args.roots.trust {
        roots.add_file(f)?;
    }
    if let Some(d) = &args.roots.ca_dir {
        roots.add_ca_dir(d)?;
    }
    if roots.is_empty() {
        bail!("nothing to trust: give --trust KEY_OR_CERT or --ca-dir DIR");
    }
    let doc =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let sig_bytes = std::fs::read(&args.signature)
        .with_context(|| format!("reading {}", args.signature.display()))?;
    let sig = Signature::from_bytes(&sig_bytes)?;
    let result = roots.verify(&doc, &sig);
    if args.json {
        print_json(&match &result {
            Ok(id) => serde_json::json!({"verified": true, "signer": id}),
            Err(e) => serde_json::json!({"verified": false, "reason": e.to_string()}),
        })?;
    }
    match result {
        Ok(id) => {
            if !args.json {
                println!("verified: signed by {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if !args.json {
                println!("refused: {e}");
            }
            Ok(ExitCode::from(EXIT_NEGATIVE))
        }
    }
}

async fn endorse(args: EndorseArgs) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    let signer = args.key.signer()?;
    let change = match (args.deprecate, args.revoke) {
        (Some(e), None) => Some((e, EndorsementStatus::Deprecated)),
        (None, Some(e)) => Some((e, EndorsementStatus::Revoked)),
        _ => None,
    };
    let endorsement = match change {
        None => {
            let entry = client.entry(args.id).await?;
            let sig = signer.sign(&canonical_metadata(&entry)?)?;
            client.endorse(args.id, &text(&sig)?).await?
        }
        Some((eid, status)) => {
            let statement = status_statement(eid, args.id, status, &args.reason);
            let sig = signer.sign(&statement)?;
            client
                .change_endorsement(args.id, eid, status, &args.reason, &text(&sig)?)
                .await?
        }
    };
    if args.remote.json {
        print_json(&endorsement)?;
    } else {
        println!(
            "{} {} by {}",
            endorsement.id,
            endorsement.status.as_str(),
            endorsement.endorser
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn text(sig: &Signature) -> anyhow::Result<String> {
    String::from_utf8(sig.to_bytes()).context("a signature's text form is UTF-8")
}

/// Signs `entry`'s canonical metadata and attaches the endorsement (push --sign).
pub async fn endorse_entry(
    client: &kiln_market::Client,
    key: &SigningKey,
    entry: &Entry,
) -> anyhow::Result<Endorsement> {
    let sig = key.signer()?.sign(&canonical_metadata(entry)?)?;
    Ok(client.endorse(entry.id, &text(&sig)?).await?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Writes `data` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut name = path.file_name().context("a file name")?.to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
