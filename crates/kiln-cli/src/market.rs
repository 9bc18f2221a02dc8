//! `kiln serve`, `kiln user`, and the marketplace client commands: push,
//! search, show, pull, deprecate, login.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use kiln_catalog::model::{Entry, NewEntry, Role};
use kiln_catalog::query::{Query, Sort, StatusFilter};
use kiln_market::api::accounts::{NewUser, add_user};
use kiln_market::client::{DEFAULT_CHUNK, Progress};
use kiln_market::{AppState, Client, Config};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::output::{EXIT_NEGATIVE, byte_progress};

#[derive(Subcommand)]
pub enum MarketCommand {
    /// Run the marketplace server (SQLite + a blob directory under --data by default).
    Serve(ServeArgs),
    /// Marketplace accounts, on the server's own state.
    #[command(subcommand)]
    User(UserCommand),
    /// Publish an image: a resumable upload; run it again to resume.
    Push(PushArgs),
    /// Search the marketplace.
    Search(SearchArgs),
    /// Show one entry.
    Show(ShowArgs),
    /// Download an entry's image, verified, resuming a partial download.
    Pull(PullArgs),
    /// Deprecate an entry.
    Deprecate(DeprecateArgs),
    /// Check a token (or a name and password) and remember the server and token.
    Login(LoginArgs),
}

#[derive(Args)]
pub struct StateArgs {
    /// Data directory of the embedded default (SQLite + blobs).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// TOML configuration (PostgreSQL, S3, limits); excludes --data.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Address to listen on (default 127.0.0.1:8080, or the config file's).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// The metadata service for these VMs, under /metadata (and the node
    /// classifier at /enc/NODE), as `kiln metadata serve` runs it alone.
    #[command(flatten, next_help_heading = "Metadata service")]
    metadata: crate::metadata::VmSet,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user and print a new API token.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Also set a password for `kiln login --user`, read from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        json: bool,
    },
    /// List the users: name, role, whether a password is set, created.
    List {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Set a user's password (for the web UI and `kiln login --user`), read
    /// from the first line of stdin.
    Passwd {
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: reader, developer or admin"))
}

#[derive(Args, Clone)]
pub struct Remote {
    /// Marketplace URL (else KILN_SERVER, else the one saved by `kiln login`).
    #[arg(long, env = "KILN_SERVER")]
    server: Option<String>,
    /// API token (else KILN_TOKEN, else the one saved by `kiln login`).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub struct PushArgs {
    file: PathBuf,
    #[arg(long)]
    title: String,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long)]
    series: Option<String>,
    #[arg(long)]
    catalogue: Option<String>,
    /// The image's own version (StratusLab/HEPiX `version`).
    #[arg(long)]
    image_version: Option<String>,
    #[arg(long)]
    os: Option<String>,
    #[arg(long)]
    os_version: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Entry this one replaces (its replaced-by is set).
    #[arg(long)]
    replaces: Option<Uuid>,
    /// Chunk size in MiB.
    #[arg(long, default_value_t = DEFAULT_CHUNK >> 20)]
    chunk_mib: u64,
    /// Another URL serving the same bytes, tried after the marketplace's
    /// own copy when pulling (repeatable, in order).
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Endorse the new entry with this key (Ed25519, or the key of --sign-cert).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Endorse with this X.509 certificate (and --sign's key).
    #[arg(long, value_name = "CERT", requires = "sign")]
    sign_cert: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct SearchArgs {
    /// Free text matched against title and description.
    text: Option<String>,
    #[arg(long)]
    os: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    publisher: Option<String>,
    #[arg(long)]
    catalogue: Option<String>,
    #[arg(long)]
    series: Option<String>,
    /// valid (default), expired, deprecated, deactivated or all.
    #[arg(long, value_parser = parse_status, default_value = "valid")]
    status: StatusFilter,
    /// Only the latest entry of each series.
    #[arg(long)]
    latest: bool,
    /// newest (default), oldest or title.
    #[arg(long, value_parser = parse_sort, default_value = "newest")]
    sort: Sort,
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    offset: Option<u32>,
    #[command(flatten)]
    remote: Remote,
}

fn parse_status(s: &str) -> Result<StatusFilter, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown status {s:?}: valid, expired, deprecated, deactivated or all")
    })
}

fn parse_sort(s: &str) -> Result<Sort, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown sort {s:?}: newest, oldest or title"))
}

#[derive(Args)]
pub struct ShowArgs {
    id: Uuid,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct PullArgs {
    id: Uuid,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    policy: crate::trust::PolicyArgs,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct DeprecateArgs {
    id: Uuid,
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Log in with this name and a password read from the first line of stdin.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

/// What `kiln login` remembers.
#[derive(Serialize, Deserialize, Default)]
struct Saved {
    server: Option<String>,
    token: Option<String>,
}

fn home_dir(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(fallback)
    })
}

/// `KILN_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/kiln/client.toml`.
fn saved_path() -> PathBuf {
    std::env::var_os("KILN_CLIENT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| home_dir("XDG_CONFIG_HOME", ".config").join("kiln/client.toml"))
}

/// Where `push` keeps what it needs to resume.
fn push_state_dir() -> PathBuf {
    home_dir("XDG_STATE_HOME", ".local/state").join("kiln/push")
}

fn load_saved() -> Saved {
    std::fs::read_to_string(saved_path())
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

impl Remote {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let saved = load_saved();
        let server = self
            .server
            .clone()
            .or(saved.server)
            .context("no server: give --server URL, set KILN_SERVER, or run kiln login")?;
        Ok(Client::new(&server, self.token.clone().or(saved.token))?)
    }
}

pub(crate) struct Bar(pub(crate) ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_entry(e: &Entry) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    println!("id:           {}", e.id);
    println!("title:        {}", e.title);
    if !e.description.is_empty() {
        println!("description:  {}", e.description);
    }
    println!(
        "status:       {}",
        e.effective_status(chrono::Utc::now()).as_str()
    );
    if let Some(r) = &e.deprecated {
        println!("deprecated:   {r}");
    }
    println!("version:      {}", opt(&e.version));
    println!(
        "os:           {} {}",
        opt(&e.os),
        e.os_version.clone().unwrap_or_default()
    );
    println!("arch:         {}", opt(&e.arch));
    println!("format:       {}", opt(&e.format));
    println!(
        "bytes:        {}",
        e.bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into())
    );
    println!(
        "virtual size: {}",
        e.virtual_size
            .map(|b| b.to_string())
            .unwrap_or_else(|| "-".into())
    );
    println!("sha256:       {}", opt(&e.checksums.sha256));
    println!("sha512:       {}", opt(&e.checksums.sha512));
    println!("publisher:    {}", e.publisher);
    println!("catalogue:    {}", e.catalogue);
    println!("series:       {}", opt(&e.series));
    println!("created:      {}", e.created.to_rfc3339());
    if let Some(v) = e.valid_until {
        println!("valid until:  {}", v.to_rfc3339());
    }
    if !e.tags.is_empty() {
        println!("tags:         {}", e.tags.join(", "));
    }
    if let Some(r) = e.replaces {
        println!("replaces:     {r}");
    }
    if let Some(r) = e.replaced_by {
        println!("replaced by:  {r}");
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        bail!("no password on stdin");
    }
    Ok(p)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn is_serve(cmd: &MarketCommand) -> bool {
    matches!(cmd, MarketCommand::Serve(_))
}

pub fn run(cmd: MarketCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async move {
        match cmd {
            MarketCommand::Serve(args) => serve(args).await,
            MarketCommand::User(cmd) => user(cmd).await,
            MarketCommand::Push(args) => push(args).await,
            MarketCommand::Search(args) => search(args).await,
            MarketCommand::Show(args) => {
                let entry = args.remote.client()?.entry(args.id).await?;
                if args.remote.json {
                    print_json(&entry)?
                } else {
                    print_entry(&entry)
                }
                Ok(ExitCode::SUCCESS)
            }
            MarketCommand::Pull(args) => {
                let client = args.remote.client()?;
                let policy = args.policy.policy()?;
                let bar = Bar(byte_progress(0, args.remote.json));
                let pulled = client
                    .pull_checked(args.id, &args.output, &bar, |entry| {
                        let Some(policy) = &policy else { return Ok(()) };
                        let report =
                            crate::trust::judge(policy, entry).map_err(|e| format!("{e:#}"))?;
                        if report.accepted {
                            Ok(())
                        } else {
                            if !args.remote.json {
                                crate::trust::explain(&report, true);
                            }
                            Err(report.reasons())
                        }
                    })
                    .await;
                bar.0.finish_and_clear();
                let pulled = match pulled {
                    Ok(p) => p,
                    // A verdict on the image exits 1, as `kiln policy check` does.
                    Err(e) if e.is_refusal() => {
                        eprintln!("kiln: {e}");
                        return Ok(ExitCode::from(EXIT_NEGATIVE));
                    }
                    Err(e) => return Err(e.into()),
                };
                if args.remote.json {
                    // The entry, as `kiln show --json` prints it, plus where the bytes came from.
                    let mut shown = serde_json::to_value(&pulled.entry)?;
                    shown["location"] = pulled.location.as_str().into();
                    print_json(&shown)?;
                } else {
                    eprintln!(
                        "kiln: {} verified (sha256 {}), from {}",
                        args.output.display(),
                        pulled.entry.checksums.sha256.unwrap_or_default(),
                        pulled.location
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            MarketCommand::Deprecate(args) => {
                let entry = args
                    .remote
                    .client()?
                    .deprecate(args.id, &args.reason)
                    .await?;
                if args.remote.json {
                    print_json(&entry)?
                } else {
                    println!("{} deprecated: {}", entry.id, args.reason)
                }
                Ok(ExitCode::SUCCESS)
            }
            MarketCommand::Login(args) => login(args).await,
        }
    })
}

/// `kiln user list|role|passwd`, on the server's own state.
async fn user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let open = |state: StateArgs| async move {
        let config = Config::resolve(state.config.as_deref(), state.data.as_deref())?;
        AppState::open(config).await
    };
    match cmd {
        UserCommand::Add {
            name,
            role,
            password_stdin,
            state,
            json,
        } => {
            let state = open(state).await?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let issued = add_user(
                &state,
                NewUser {
                    name,
                    role,
                    password,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
            if json {
                print_json(&issued)?;
            } else {
                println!("{}", issued.token);
            }
        }
        UserCommand::List { state, json } => {
            let users = open(state).await?.store.users().await?;
            if json {
                #[derive(Serialize)]
                struct Row<'a> {
                    #[serde(flatten)]
                    user: &'a kiln_catalog::model::User,
                    password: bool,
                }
                let rows: Vec<Row> = users
                    .iter()
                    .map(|u| Row {
                        user: u,
                        password: u.password_hash.is_some(),
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                for u in &users {
                    println!(
                        "{:<24} {:<9} {:<11} {}",
                        u.name,
                        u.role.as_str(),
                        if u.password_hash.is_some() {
                            "password"
                        } else {
                            "no-password"
                        },
                        u.created.format("%Y-%m-%d %H:%M")
                    );
                }
            }
        }
        UserCommand::Role { name, role, state } => {
            if !open(state).await?.store.set_role(&name, role).await? {
                bail!("no user {name:?}");
            }
            eprintln!("kiln: {name} is now {}", role.as_str());
        }
        UserCommand::Passwd { name, state } => {
            let state = open(state).await?;
            let password = read_password()?;
            let hash = kiln_market::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            if !state.store.set_password(&name, &hash).await? {
                bail!("no user {name:?}");
            }
            eprintln!("kiln: password of {name} set");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::resolve(args.state.config.as_deref(), args.state.data.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let listen = config.listen;
    // Every description is read before anything listens: a bad one stops the start.
    let metadata = if args.metadata.is_empty() {
        None
    } else {
        Some(args.metadata.service()?)
    };
    let state = AppState::open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    // One line on stdout that scripts (and tests) can read the address from.
    println!("kiln: serving on http://{address}");
    let mounts = match metadata {
        Some(service) => {
            let vms = crate::metadata::urls(
                &service,
                &format!("http://{address}{}", kiln_metadata::MOUNT),
            );
            println!(
                "kiln: metadata service on http://{address}{}/",
                kiln_metadata::MOUNT
            );
            crate::metadata::print_vms(&vms);
            kiln_metadata::mounts(service)
        }
        None => axum::Router::new(),
    };
    std::io::stdout().flush()?;
    kiln_market::server::serve_on(
        state,
        listener,
        mounts,
        kiln_market::server::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    if args.chunk_mib == 0 {
        bail!("--chunk-mib must be at least 1");
    }
    let new = NewEntry {
        title: args.title,
        description: args.description,
        version: args.image_version,
        os: args.os,
        os_version: args.os_version,
        arch: args.arch,
        series: args.series,
        tags: args.tags,
        catalogue: args.catalogue,
        replaces: args.replaces,
        mirrors: args.mirrors,
        ..Default::default()
    };
    // Load the signing key before uploading anything.
    let sign = args.sign.map(|key| crate::trust::SigningKey {
        key,
        cert: args.sign_cert,
    });
    if let Some(s) = &sign {
        s.signer()?;
    }
    let bar = Bar(byte_progress(0, args.remote.json));
    let entry = client
        .push(
            &args.file,
            new,
            &push_state_dir(),
            args.chunk_mib << 20,
            &bar,
        )
        .await
        .with_context(|| format!("pushing {}", args.file.display()))?;
    bar.0.finish_and_clear();
    if let Some(s) = &sign {
        let e = crate::trust::endorse_entry(&client, s, &entry)
            .await
            .with_context(|| format!("endorsing {}", entry.id))?;
        eprintln!("kiln: {} endorsed by {}", entry.id, e.endorser);
    }
    if args.remote.json {
        print_json(&entry)?;
    } else {
        println!("{}", entry.id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let query = Query {
        os: args.os,
        arch: args.arch,
        format: args.format,
        tag: args.tag,
        publisher: args.publisher,
        catalogue: args.catalogue,
        series: args.series,
        q: args.text,
        status: args.status,
        latest: args.latest,
        sort: args.sort,
        limit: args.limit,
        offset: args.offset,
    };
    let page = args.remote.client()?.search(&query).await?;
    if args.remote.json {
        print_json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<11}  {:<7}  {:>12}  TITLE",
        "ID", "STATUS", "FORMAT", "BYTES"
    );
    for e in &page.entries {
        println!(
            "{:<36}  {:<11}  {:<7}  {:>12}  {}",
            e.id,
            e.effective_status(chrono::Utc::now()).as_str(),
            e.format.as_deref().unwrap_or("-"),
            e.bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            e.title
        );
    }
    eprintln!("{} of {} entries", page.entries.len(), page.total);
    Ok(ExitCode::SUCCESS)
}

async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let server = args
        .remote
        .server
        .clone()
        .or(load_saved().server)
        .context("give --server URL or set KILN_SERVER")?;
    let token = match (&args.user, &args.remote.token) {
        (Some(name), _) => {
            Client::new(&server, None)?
                .login(name, &read_password()?)
                .await?
                .token
        }
        (None, Some(t)) => t.clone(),
        (None, None) => {
            eprint!("token: ");
            read_password()?
        }
    };
    let user = Client::new(&server, Some(token.clone()))?
        .me()
        .await
        .context("checking the token")?;
    let saved = Saved {
        server: Some(server.clone()),
        token: Some(token),
    };
    let path = saved_path();
    write_private(&path, &toml::to_string(&saved)?)?;
    if args.remote.json {
        print_json(&user)?;
    } else {
        println!(
            "logged in to {server} as {} ({}); saved in {}",
            user.name,
            user.role.as_str(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
