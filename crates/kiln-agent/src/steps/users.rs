//! Users, groups, sudo rules, passwords and SSH keys.

use std::os::unix::fs::chown;
use std::path::Path;

use kiln_context::cloudconfig::{Sudo, User};

use super::{Done, Env};
use crate::accounts::{Account, Accounts, hash_password, valid_name};
use crate::files::{ensure_dir, read_text, write_atomic};
use crate::root::Root;

fn named_users<'a>(env: &Env<'a>) -> Vec<&'a User> {
    env.context.config.named_users().collect()
}

/// /bin/bash when the image has it (one-context's default), else /bin/sh.
fn default_shell(root: &Root) -> &'static str {
    if root.at("/bin/bash").exists() || root.at("/usr/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// A new home: /etc/skel copied in, everything owned by the user.
fn make_home(root: &Root, account: &Account) -> Result<(), String> {
    let home = root.join(&account.home)?;
    if home.exists() {
        return Ok(());
    }
    let owner = Some((account.uid, account.gid));
    ensure_dir(&home, 0o700, owner)?;
    copy_tree(&root.at("/etc/skel"), &home, owner)
}

fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries.filter_map(Result::ok) {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            ensure_dir(&target, 0o755, owner)?;
            copy_tree(&source, &target, owner)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
            write_atomic(
                &target,
                &bytes,
                crate::files::mode_of(&source, 0o644),
                owner,
            )?;
        }
    }
    Ok(())
}

fn sudo_rules(user: &User) -> Vec<String> {
    match &user.sudo {
        Some(Sudo::Rule(rule)) if !rule.is_empty() => vec![rule.clone()],
        Some(Sudo::Rules(rules)) => rules.clone(),
        _ => Vec::new(),
    }
}

/// Groups, then users with their groups, homes and sudo rules.
pub fn users(env: &Env<'_>) -> Result<Done, String> {
    let users = named_users(env);
    let context = env.context;
    let keys_user = (!context.default_keys.is_empty()).then(|| context.default_user());
    if users.is_empty() && context.groups.is_empty() && keys_user.is_none() {
        return Ok(Done::Skipped("the context names no users or groups".into()));
    }
    let mut accounts = Accounts::load(env.root)?;
    let mut done = Vec::new();
    for (group, members) in &context.groups {
        accounts.ensure_group(group, None)?;
        for member in members {
            if accounts.user(member).is_some() {
                accounts.add_member(group, member)?;
            }
        }
        done.push(format!("group {group}"));
    }
    let shell = default_shell(env.root);
    let mut created = Vec::new();
    for user in &users {
        let account = accounts.ensure_user(&user.name, user.shell.as_deref(), shell)?;
        for group in user.groups.as_ref().map(|g| g.names()).unwrap_or_default() {
            accounts.add_member(&group, &user.name)?;
        }
        if account.created {
            created.push(account.clone());
        }
        done.push(format!("user {}", user.name));
    }
    // The user the metadata's keys go to exists too.
    if let Some(name) = keys_user.filter(|n| !users.iter().any(|u| &u.name == n)) {
        let account = accounts.ensure_user(&name, None, shell)?;
        if account.created {
            created.push(account);
            done.push(format!("user {name}"));
        }
    }
    accounts.save()?;
    for account in &created {
        make_home(env.root, account)?;
    }
    for user in &users {
        let rules = sudo_rules(user);
        let path = env
            .root
            .at(&format!("/etc/sudoers.d/90-kiln-{}", user.name));
        if rules.is_empty() {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if rules.iter().any(|r| r.contains('\n')) {
            return Err(format!("a sudo rule of {} spans lines", user.name));
        }
        let text: String = rules
            .iter()
            .map(|r| format!("{} {r}\n", user.name))
            .collect();
        write_atomic(
            &path,
            format!("# kiln-agent\n{text}").as_bytes(),
            0o440,
            Some((0, 0)),
        )?;
        done.push(format!("sudo {}", user.name));
    }
    Ok(Done::Applied(done.join(", ")))
}

/// Passwords: hashes as given, plain ones hashed (sha512-crypt) first.
pub fn passwords(env: &Env<'_>) -> Result<Done, String> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for user in named_users(env) {
        let hash = match (&user.hashed_passwd, &user.passwd, &user.plain_text_passwd) {
            (Some(hash), _, _) | (None, Some(hash), _) => hash.clone(),
            (None, None, Some(plain)) => hash_password(plain)?,
            (None, None, None) => continue,
        };
        wanted.push((user.name.clone(), hash));
    }
    for (name, password, hashed) in &env.context.chpasswd {
        let hash = if *hashed {
            password.clone()
        } else {
            hash_password(password)?
        };
        wanted.push((name.clone(), hash));
    }
    if wanted.is_empty() {
        return Ok(Done::Skipped("the context sets no passwords".into()));
    }
    let mut accounts = Accounts::load(env.root)?;
    for (name, hash) in &wanted {
        accounts.set_password_hash(name, hash)?;
    }
    accounts.save()?;
    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    Ok(Done::Applied(names.join(", ")))
}

/// Appends each key not yet present to ~user/.ssh/authorized_keys.
pub fn ssh_keys(env: &Env<'_>) -> Result<Done, String> {
    let mut by_user: Vec<(String, Vec<String>)> = named_users(env)
        .iter()
        .map(|u| (u.name.clone(), u.ssh_authorized_keys.clone()))
        .collect();
    if !env.context.default_keys.is_empty() {
        let name = env.context.default_user();
        match by_user.iter_mut().find(|(n, _)| *n == name) {
            Some((_, keys)) => keys.extend(env.context.default_keys.iter().cloned()),
            None => by_user.push((name, env.context.default_keys.clone())),
        }
    }
    by_user.retain(|(_, keys)| !keys.is_empty());
    if by_user.is_empty() {
        return Ok(Done::Skipped("the context has no SSH keys".into()));
    }
    let accounts = Accounts::load(env.root)?;
    let mut done = Vec::new();
    for (name, keys) in by_user {
        if !valid_name(&name) {
            return Err(format!("{name:?} is not a user name"));
        }
        let account = accounts
            .user(&name)
            .ok_or_else(|| format!("no user {name} for its SSH keys"))?;
        let owner = Some((account.uid, account.gid));
        let ssh = env
            .root
            .join(&format!("{}/.ssh", account.home.trim_end_matches('/')))?;
        ensure_dir(&ssh, 0o700, owner)?;
        let path = ssh.join("authorized_keys");
        let mut text = read_text(&path)?;
        let mut added = 0;
        for key in keys
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('#'))
        {
            if key.contains('\n') {
                return Err(format!("an SSH key of {name} spans lines"));
            }
            if !text.lines().any(|l| l.trim() == key) {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(key);
                text.push('\n');
                added += 1;
            }
        }
        if added > 0 || !path.exists() {
            write_atomic(&path, text.as_bytes(), 0o600, owner)?;
        }
        chown(&ssh, Some(account.uid), Some(account.gid)).map_err(|e| e.to_string())?;
        done.push(format!("{name} (+{added})"));
    }
    Ok(Done::Applied(done.join(", ")))
}
