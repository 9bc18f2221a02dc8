//! Users and groups by editing /etc/passwd, /etc/shadow, /etc/group and
//! /etc/gshadow directly (as useradd does), so the same code works on a
//! running guest and on a root directory in tests. Each file is replaced
//! atomically and keeps its mode and owner.

use std::path::PathBuf;

use crate::files::{mode_of, owner_of, read_text, write_atomic};
use crate::root::Root;

/// First id given to new users and groups, and the end of the range (as
/// Debian's login.defs: UID_MIN 1000, UID_MAX 60000).
const FIRST_ID: u32 = 1000;
const LAST_ID: u32 = 60000;

/// One colon-separated database file.
struct Table {
    path: PathBuf,
    rows: Vec<Vec<String>>,
    default_mode: u32,
    changed: bool,
}

impl Table {
    fn load(root: &Root, guest_path: &str, default_mode: u32) -> Result<Table, String> {
        let path = root.at(guest_path);
        let rows = read_text(&path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(':').map(str::to_string).collect())
            .collect();
        Ok(Table {
            path,
            rows,
            default_mode,
            changed: false,
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.rows
            .iter()
            .position(|r| r.first().is_some_and(|n| n == name))
    }

    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.rows.iter().filter_map(|r| r.get(2)?.parse().ok())
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
        self.changed = true;
    }

    fn set(&mut self, index: usize, field: usize, value: &str) {
        let row = &mut self.rows[index];
        if row.len() <= field {
            row.resize(field + 1, String::new());
        }
        if row[field] != value {
            row[field] = value.to_string();
            self.changed = true;
        }
    }

    fn save(&self) -> Result<(), String> {
        if !self.changed {
            return Ok(());
        }
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&row.join(":"));
            text.push('\n');
        }
        let mode = mode_of(&self.path, self.default_mode);
        write_atomic(&self.path, text.as_bytes(), mode, owner_of(&self.path))
    }
}

/// The four account databases, loaded together and saved together.
pub struct Accounts {
    passwd: Table,
    shadow: Table,
    group: Table,
    gshadow: Table,
}

/// A user as the agent needs it: ids and home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub created: bool,
}

/// A login or group name useradd would take: no `:`, no newline, no `/`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid user or group name"))
    }
}

/// Days since 1970, for shadow's "last changed" field.
fn days_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400).to_string()
}

impl Accounts {
    pub fn load(root: &Root) -> Result<Accounts, String> {
        Ok(Accounts {
            passwd: Table::load(root, "/etc/passwd", 0o644)?,
            shadow: Table::load(root, "/etc/shadow", 0o640)?,
            group: Table::load(root, "/etc/group", 0o644)?,
            gshadow: Table::load(root, "/etc/gshadow", 0o640)?,
        })
    }

    pub fn save(&self) -> Result<(), String> {
        // Shadow files first: a passwd line never points at a missing shadow line.
        self.shadow.save()?;
        self.gshadow.save()?;
        self.group.save()?;
        self.passwd.save()
    }

    pub fn user(&self, name: &str) -> Option<Account> {
        let row = &self.passwd.rows[self.passwd.find(name)?];
        Some(Account {
            name: name.to_string(),
            uid: row.get(2)?.parse().ok()?,
            gid: row.get(3)?.parse().ok()?,
            home: row.get(5).cloned().unwrap_or_default(),
            created: false,
        })
    }

    pub fn group_id(&self, name: &str) -> Option<u32> {
        let row = &self.group.rows[self.group.find(name)?];
        row.get(2)?.parse().ok()
    }

    fn free_id(&self, taken: &[u32], prefer: Option<u32>) -> Result<u32, String> {
        if let Some(id) = prefer.filter(|id| !taken.contains(id)) {
            return Ok(id);
        }
        let highest = taken
            .iter()
            .copied()
            .filter(|id| (FIRST_ID..LAST_ID).contains(id))
            .max();
        match highest {
            Some(id) => Ok(id + 1),
            None => Ok(FIRST_ID),
        }
        .and_then(|id: u32| {
            if id < LAST_ID {
                Ok(id)
            } else {
                Err("no free id left".to_string())
            }
        })
    }

    /// The group's id, creating the group when missing.
    pub fn ensure_group(&mut self, name: &str, prefer: Option<u32>) -> Result<u32, String> {
        check_name(name)?;
        if let Some(gid) = self.group_id(name) {
            return Ok(gid);
        }
        let taken: Vec<u32> = self.group.ids().collect();
        let gid = self.free_id(&taken, prefer)?;
        self.group.push(vec![
            name.into(),
            "x".into(),
            gid.to_string(),
            String::new(),
        ]);
        if self.gshadow.find(name).is_none() {
            self.gshadow
                .push(vec![name.into(), "!".into(), String::new(), String::new()]);
        }
        Ok(gid)
    }

    /// The user, created with its own group and `home` when missing; an
    /// existing user gets `shell` when one is given.
    pub fn ensure_user(
        &mut self,
        name: &str,
        shell: Option<&str>,
        default_shell: &str,
    ) -> Result<Account, String> {
        check_name(name)?;
        if let Some(account) = self.user(name) {
            if let (Some(shell), Some(index)) = (shell, self.passwd.find(name)) {
                self.passwd.set(index, 6, shell);
            }
            return Ok(account);
        }
        let taken: Vec<u32> = self.passwd.ids().collect();
        let uid = self.free_id(&taken, None)?;
        let gid = self.ensure_group(name, Some(uid))?;
        let home = if name == "root" {
            "/root".to_string()
        } else {
            format!("/home/{name}")
        };
        self.passwd.push(vec![
            name.into(),
            "x".into(),
            uid.to_string(),
            gid.to_string(),
            String::new(),
            home.clone(),
            shell.unwrap_or(default_shell).into(),
        ]);
        if self.shadow.find(name).is_none() {
            self.shadow.push(
                [name, "!", &days_now(), "0", "99999", "7", "", "", ""]
                    .map(str::to_string)
                    .to_vec(),
            );
        }
        Ok(Account {
            name: name.into(),
            uid,
            gid,
            home,
            created: true,
        })
    }

    /// Adds the user to the group's member list (idempotent).
    pub fn add_member(&mut self, group: &str, user: &str) -> Result<(), String> {
        self.ensure_group(group, None)?;
        // Members are the fourth field of both group and gshadow.
        let field = 3;
        for table in [&mut self.group, &mut self.gshadow] {
            let Some(index) = table.find(group) else {
                continue;
            };
            let members = table.rows[index].get(field).cloned().unwrap_or_default();
            let mut list: Vec<&str> = members.split(',').filter(|m| !m.is_empty()).collect();
            if !list.contains(&user) {
                list.push(user);
                let joined = list.join(",");
                table.set(index, field, &joined);
            }
        }
        Ok(())
    }

    /// Sets the shadow password field to a crypt(3) hash, or locks it (`!`).
    pub fn set_password_hash(&mut self, user: &str, hash: &str) -> Result<(), String> {
        if hash.contains([':', '\n']) {
            return Err(format!(
                "the password hash for {user} holds ':' or a newline"
            ));
        }
        let Some(index) = self.shadow.find(user) else {
            return Err(format!("{user} has no /etc/shadow entry"));
        };
        self.shadow.set(index, 1, hash);
        self.shadow.set(index, 2, &days_now());
        Ok(())
    }

    /// Whether the password is locked (`!`/`*` prefix) or empty.
    pub fn password_hash(&self, user: &str) -> Option<String> {
        let index = self.shadow.find(user)?;
        self.shadow.rows[index].get(1).cloned()
    }
}

/// sha512-crypt with a random salt: a plain password never reaches the disk.
pub fn hash_password(plain: &str) -> Result<String, String> {
    use sha_crypt::PasswordHasher as _;
    // 12 random bytes are 16 salt characters, the most sha512-crypt uses:
    // crypt(3) cuts a longer salt, and its hash would not match the stored one.
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let hash = sha_crypt::ShaCrypt::default()
        .hash_password_with_salt(plain.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash a password: {e}"))?;
    // 5000 rounds is crypt(3)'s default: the usual form leaves it out.
    Ok(hash.replacen("$rounds=5000$", "$", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("shadow"),
            "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nsudo:x:27:\nbob:x:1000:\n").unwrap();
        std::fs::write(etc.join("gshadow"), "root:*::\nsudo:*::\nbob:!::\n").unwrap();
        let root = Root::new(dir.path());
        (dir, root)
    }

    #[test]
    fn users_groups_and_members() {
        let (_dir, root) = root();
        let mut accounts = Accounts::load(&root).unwrap();
        let alice = accounts.ensure_user("alice", None, "/bin/bash").unwrap();
        assert_eq!(
            (alice.uid, alice.gid, alice.home.as_str(), alice.created),
            (1001, 1001, "/home/alice", true)
        );
        let again = accounts.ensure_user("alice", None, "/bin/bash").unwrap();
        assert!(!again.created);
        accounts.add_member("sudo", "alice").unwrap();
        accounts.add_member("sudo", "alice").unwrap();
        accounts.add_member("docker", "alice").unwrap();
        accounts.save().unwrap();
        let group = std::fs::read_to_string(root.at("/etc/group")).unwrap();
        assert!(group.contains("sudo:x:27:alice\n"), "{group}");
        assert!(group.contains("alice:x:1001:\n"), "{group}");
        assert!(group.contains("docker:x:1002:alice\n"), "{group}");
        let gshadow = std::fs::read_to_string(root.at("/etc/gshadow")).unwrap();
        assert!(gshadow.contains("sudo:*::alice\n"), "{gshadow}");
        let passwd = std::fs::read_to_string(root.at("/etc/passwd")).unwrap();
        assert!(
            passwd.ends_with("alice:x:1001:1001::/home/alice:/bin/bash\n"),
            "{passwd}"
        );
        assert!(accounts.ensure_user("bad:name", None, "/bin/sh").is_err());
        assert!(accounts.ensure_user("../x", None, "/bin/sh").is_err());
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let (_dir, root) = root();
        let mut accounts = Accounts::load(&root).unwrap();
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$6$"), "{hash}");
        accounts.set_password_hash("bob", &hash).unwrap();
        assert!(accounts.set_password_hash("bob", "a:b").is_err());
        assert!(accounts.set_password_hash("nobody", &hash).is_err());
        accounts.save().unwrap();
        let shadow = std::fs::read_to_string(root.at("/etc/shadow")).unwrap();
        assert!(shadow.contains(&format!("bob:{hash}:")), "{shadow}");
        assert!(!shadow.contains("s3cret"));
    }
}
