//! The config follows its file: the config file and every file it names
//! (`*_file` fields: secrets, TLS, assertion and token files) are read once a
//! second, and a change that has held still for one more read is reported, to
//! be applied exactly as SIGHUP applies it.
//!
//! Reading contents by path, rather than watching inodes, is what follows a
//! mounted ConfigMap or Secret: the kubelet updates those by swapping the
//! `..data` symlink atomically, so the file's inode never changes while what
//! its path reads does (inotify on the file alone misses it).

use crate::config::interpolate;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the files are read.
pub const POLL: Duration = Duration::from_secs(1);

/// What the files held: a hash of each one's contents, `None` when unreadable.
type State = Vec<Option<u64>>;

/// Watches a config file and the files it names.
pub struct ConfigWatch {
    config: PathBuf,
    files: Vec<PathBuf>,
    /// What the files held when the running config was (last) loaded.
    applied: State,
    /// A changed state seen once, reported when the next read agrees.
    pending: Option<State>,
}

impl ConfigWatch {
    pub fn new(config: &Path) -> ConfigWatch {
        let mut watch = ConfigWatch {
            config: config.to_path_buf(),
            files: Vec::new(),
            applied: Vec::new(),
            pending: None,
        };
        watch.settle();
        watch
    }

    /// Takes what the files hold now as applied (after any reload, accepted or
    /// refused), and what the config now names as the files to watch.
    pub fn settle(&mut self) {
        self.files = watched_files(&self.config);
        self.applied = read(&self.files);
        self.pending = None;
    }

    /// Waits until the files changed and held still for one more read; returns
    /// the files that changed.
    pub async fn changed(&mut self) -> Vec<PathBuf> {
        loop {
            tokio::time::sleep(POLL).await;
            let now = read(&self.files);
            match settled_change(&self.applied, self.pending.as_ref(), &now) {
                Change::None => self.pending = None,
                Change::Moving => self.pending = Some(now),
                Change::Settled => {
                    return self
                        .files
                        .iter()
                        .zip(self.applied.iter().zip(&now))
                        .filter(|(_, (was, is))| was != is)
                        .map(|(path, _)| path.clone())
                        .collect();
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    /// Changed since the last read: wait for it to hold still.
    Moving,
    /// Changed, and the same as the last read.
    Settled,
}

/// PURE: whether `now` is a change from `applied` that `pending` (the last
/// read) already showed.
fn settled_change(applied: &State, pending: Option<&State>, now: &State) -> Change {
    if now == applied {
        Change::None
    } else if pending == Some(now) {
        Change::Settled
    } else {
        Change::Moving
    }
}

fn read(files: &[PathBuf]) -> State {
    files
        .iter()
        .map(|path| {
            std::fs::read(path).ok().map(|bytes| {
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                hasher.finish()
            })
        })
        .collect()
}

/// Fields whose file is read afresh at each use (each fetch): a change to it
/// needs no reload, and a reload for it would refetch every key set and token
/// (a projected service-account token rotates hourly).
const READ_AT_USE: &[&str] = &[
    "jwks_bearer_token_file",
    "assertion_file",
    "subject_token_file",
];

/// The config file, then the files it names whose change needs a reload.
pub fn watched_files(config: &Path) -> Vec<PathBuf> {
    files(config, &|key| !READ_AT_USE.contains(&key))
}

/// The config file, then every file it names (`tokengate check --online`
/// reads them all).
pub fn named_files(config: &Path) -> Vec<PathBuf> {
    files(config, &|_| true)
}

/// The config file, then the values of its `*_file` fields that `wanted`
/// picks, `${ENV}` interpolated as the config is. Read from the file as it is
/// now, so a changed config that names other files is followed too.
fn files(config: &Path, wanted: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files = vec![config.to_path_buf()];
    let text = std::fs::read_to_string(config).unwrap_or_default();
    if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
        collect_files(&doc, wanted, &mut files);
    }
    files.dedup();
    files
}

fn collect_files(
    value: &serde_yaml::Value,
    wanted: &dyn Fn(&str) -> bool,
    files: &mut Vec<PathBuf>,
) {
    let env = |name: &str| std::env::var(name).ok();
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, value) in map {
                let key = key.as_str().unwrap_or_default();
                match value.as_str() {
                    Some(path) if key.ends_with("_file") => {
                        if let (true, Ok(path)) = (wanted(key), interpolate(path, &env)) {
                            files.push(PathBuf::from(path));
                        }
                    }
                    _ => collect_files(value, wanted, files),
                }
            }
        }
        serde_yaml::Value::Sequence(items) => {
            items
                .iter()
                .for_each(|item| collect_files(item, wanted, files));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reported_once_it_holds_still() {
        let (a, b, c) = (vec![Some(1)], vec![Some(2)], vec![Some(3)]);
        let cases = [
            (&a, None, &a, Change::None),
            (&a, None, &b, Change::Moving),
            (&a, Some(&b), &b, Change::Settled),
            (&a, Some(&b), &c, Change::Moving),
            (&a, Some(&b), &a, Change::None),
            (&a, None, &vec![None], Change::Moving),
        ];
        for (applied, pending, now, want) in cases {
            assert_eq!(
                settled_change(applied, pending, now),
                want,
                "{applied:?} {pending:?} {now:?}"
            );
        }
    }

    #[test]
    fn the_files_a_config_names_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokengate.yaml");
        std::fs::write(
            &config,
            "inbound:\n  tls: { cert_file: /c.pem, key_file: /k.pem }\n  issuers:\n    - { issuer: x, shared_secret_file: /s, jwks_bearer_token_file: /sa, tls: { ca_file: /ca } }\noutbound:\n  tokens:\n    t: { kind: file, path: /t, client_secret_file: /cs, subject_token_file: /st }\n",
        )
        .unwrap();
        let paths = |list: &[&str]| -> Vec<PathBuf> {
            std::iter::once(config.to_str().unwrap())
                .chain(list.iter().copied())
                .map(PathBuf::from)
                .collect()
        };
        // Token files read at each fetch are not watched; `check --online` reads them.
        assert_eq!(
            watched_files(&config),
            paths(&["/c.pem", "/k.pem", "/s", "/ca", "/cs"])
        );
        assert_eq!(
            named_files(&config),
            paths(&["/c.pem", "/k.pem", "/s", "/sa", "/ca", "/cs", "/st"])
        );
    }
}
