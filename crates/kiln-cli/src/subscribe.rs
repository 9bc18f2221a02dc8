//! `kiln subscribe`: one sync of a site's image cache with a signed list
//! (a kiln signed catalog or a HEPiX image list); a cron job or a systemd
//! timer runs it. The work is `kiln_trust::subscribe::sync`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kiln_market::Client;
use kiln_market::client::SubscribeFetch;
use kiln_trust::TrustRoots;
use kiln_trust::subscribe::{Report, SyncError, sync};

use crate::market::Bar;
use crate::output::{EXIT_FAILURE, EXIT_NEGATIVE, byte_progress};

#[derive(Args)]
pub struct SubscribeArgs {
    /// The signed list: a kiln catalog (…/api/v1/catalogues/NAME/signed, its
    /// signature at URL.sig) or an S/MIME signed HEPiX image list.
    url: String,
    /// Trusted signer: an Ed25519 public key (NAME.pub), a PEM certificate
    /// or CA file (with CRLs), or a CA directory. Repeatable.
    #[arg(long = "trust", required = true, value_name = "KEY_OR_CERT")]
    trust: Vec<PathBuf>,
    /// The image cache: valid/, expired/ and the state file.
    #[arg(long, value_name = "DIR")]
    cache: PathBuf,
    /// API token, for a private catalogue.
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print what changed as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let url = url::Url::parse(&args.url).with_context(|| format!("list URL {:?}", args.url))?;
    let mut roots = TrustRoots::new();
    for t in &args.trust {
        if t.is_dir() {
            roots.add_ca_dir(t)?;
        } else {
            roots.add_file(t)?;
        }
    }
    let client = Client::new(&url.origin().ascii_serialization(), args.token.clone())?;
    let bar = Bar(byte_progress(0, args.json));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let fetch = SubscribeFetch {
            client: &client,
            progress: &bar,
        };
        sync(&fetch, &url, &roots, &args.cache, chrono::Utc::now()).await
    });
    bar.0.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        // A refused list (signature, rollback, expiry) is a verdict: exit 1,
        // as `kiln verify` and `kiln policy check` do. The cache is untouched.
        Err(e @ (SyncError::Signature { .. } | SyncError::Stale { .. })) => {
            eprintln!("kiln: {e}");
            return Ok(ExitCode::from(EXIT_NEGATIVE));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

fn print_report(r: &Report) {
    let previous = r
        .previous_version
        .as_deref()
        .map(|v| format!(" (was {v})"))
        .unwrap_or_default();
    println!(
        "{} list version {}{previous}, signed by {}, expires {}",
        r.format, r.version, r.signer, r.expires
    );
    for i in &r.downloaded {
        println!(
            "downloaded  {}  {} ({} bytes, verified)",
            i.id, i.title, i.size
        );
    }
    for id in &r.kept {
        println!("kept        {id}");
    }
    for id in &r.expired {
        println!("expired     {id}");
    }
    for f in &r.failed {
        println!("FAILED      {}  {}", f.id, f.error);
    }
}
