//! A profile: the directory where one signed-in identity of this client lives.
//!
//! ```text
//! <profile dir>/            mode 0700
//!   session.json            0600  server URL, account, device, access and refresh tokens
//!   keystore.json           0600  device secret keys, MLS state, plaintexts (crate::keystore)
//! ```
//!
//! The directory is `$CONCLAVE_HOME/profiles/<profile>` when `CONCLAVE_HOME` is set (the
//! `profiles/` level keeps profiles apart from the local stack's files, which
//! `scripts/stack.sh` also keeps under `CONCLAVE_HOME`), else
//! `$XDG_CONFIG_HOME/conclave/<profile>`, else `~/.config/conclave/<profile>`.
//!
//! Every file is written whole to a `0600` temporary file, synced and renamed over the old one,
//! so a crash leaves the old or the new file. That matters most for `session.json`: the server
//! rotates the refresh token on every use and ends the session if a spent one comes back, so a
//! half-written or stale file would sign the user out.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::api::{self, TokenSink, Tokens};
use crate::keystore::{Keystore, KeystoreError, write_atomically};

/// The `session.json` format this client reads and writes.
pub const SESSION_VERSION: u32 = 1;

/// Why a profile could not be used.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of the profile is readable or writable by other users.
    #[error(
        "refusing to use {path}: its permissions are {mode:03o}, but it must be readable by its owner only (chmod 600)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// A file is not in the expected format.
    #[error("{path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's message (never a secret value).
        reason: String,
    },
    /// The profile name is not usable as a directory name.
    #[error("invalid profile name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidProfileName(String),
    /// No directory could be chosen (neither `CONCLAVE_HOME`, `XDG_CONFIG_HOME` nor `HOME` is set).
    #[error("cannot choose a profile directory: set CONCLAVE_HOME or HOME")]
    NoHome,
}

/// What `session.json` holds. `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The format version, [`SESSION_VERSION`].
    pub version: u32,
    /// The data plane's URL.
    pub server: String,
    /// The signed-in account.
    pub user_id: Uuid,
    /// Its email address, for display.
    pub email: String,
    /// This device's id on the server.
    pub device_id: Uuid,
    /// The current token pair.
    pub tokens: Tokens,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("device_id", &self.device_id)
            .field("tokens", &"<redacted>")
            .finish()
    }
}

/// One profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

impl Profile {
    /// The default directory of profile `name` (see the module docs).
    pub fn default_dir(name: &str) -> Result<PathBuf, StoreError> {
        Self::dir_in(name, env_path("CONCLAVE_HOME"), env_path("XDG_CONFIG_HOME"), env_path("HOME"))
    }

    fn dir_in(
        name: &str,
        conclave_home: Option<PathBuf>,
        xdg_config: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Result<PathBuf, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(StoreError::InvalidProfileName(name.to_owned()));
        }
        if let Some(root) = conclave_home {
            return Ok(root.join("profiles").join(name));
        }
        let config = xdg_config.or_else(|| home.map(|home| home.join(".config"))).ok_or(StoreError::NoHome)?;
        Ok(config.join("conclave").join(name))
    }

    /// Opens (creating it, mode 0700, if needed) the profile at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let io = |source| StoreError::Io { path: dir.clone(), source };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(&dir).map_err(io)?;
        Ok(Self { dir })
    }

    /// The profile's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `session.json`.
    pub fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    /// `keystore.json`.
    pub fn keystore_path(&self) -> PathBuf {
        self.dir.join("keystore.json")
    }

    /// The saved session, if there is one.
    pub fn load_session(&self) -> Result<Option<Session>, StoreError> {
        let Some(text) = read_private(&self.session_path())? else { return Ok(None) };
        let session: Session = serde_json::from_str(&text)
            .map_err(|e| StoreError::Malformed { path: self.session_path(), reason: e.to_string() })?;
        if session.version != SESSION_VERSION {
            return Err(StoreError::Malformed {
                path: self.session_path(),
                reason: format!("format version {} (this client reads {SESSION_VERSION})", session.version),
            });
        }
        Ok(Some(session))
    }

    /// Writes the session atomically, mode 0600.
    pub fn save_session(&self, session: &Session) -> Result<(), StoreError> {
        write_json(&self.session_path(), session)
    }

    /// Deletes the session (logout). The keystore stays: the device and its keys outlive a session.
    pub fn remove_session(&self) -> Result<(), StoreError> {
        match fs::remove_file(self.session_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::Io { path: self.session_path(), source: e })
            }
            _ => Ok(()),
        }
    }

    /// Loads the keystore, or creates one with fresh device keys. Returns whether it was created.
    pub fn load_or_create_keystore(&self) -> Result<(Keystore, bool), KeystoreError> {
        let path = self.keystore_path();
        if path.try_exists().map_err(|source| KeystoreError::Io { path: path.clone(), source })? {
            return Ok((Keystore::load(path)?, false));
        }
        let keys = crate::crypto::DeviceKeys::generate()
            .map_err(|source| KeystoreError::InvalidKey { path: path.clone(), source })?;
        Ok((Keystore::create(path, keys)?, true))
    }

    /// Loads the keystore, which must exist.
    pub fn load_keystore(&self) -> Result<Keystore, KeystoreError> {
        Keystore::load(self.keystore_path())
    }

    /// A [`TokenSink`] that rewrites `session.json` with each refreshed token pair.
    pub fn token_sink(&self, session: Session) -> SessionSink {
        SessionSink { profile: self.clone(), session: std::sync::Mutex::new(session) }
    }
}

/// Persists refreshed tokens into the profile's `session.json`.
pub struct SessionSink {
    profile: Profile,
    session: std::sync::Mutex<Session>,
}

impl TokenSink for SessionSink {
    fn store(&self, tokens: &Tokens) -> api::Result<()> {
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        session.tokens = tokens.clone();
        self.profile.save_session(&session)?;
        Ok(())
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|value| !value.is_empty()).map(PathBuf::from)
}

/// Serializes `value` and writes it atomically with mode 0600.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut json = Zeroizing::new(
        serde_json::to_vec_pretty(value)
            .map_err(|e| StoreError::Malformed { path: path.to_owned(), reason: e.to_string() })?,
    );
    json.push(b'\n');
    write_atomically(path, &json).map_err(|source| StoreError::Io { path: path.to_owned(), source })
}

/// Reads a file that must be private to its owner; `None` when it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<Zeroizing<String>>, StoreError> {
    let io = |source| StoreError::Io { path: path.to_owned(), source };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::InsecurePermissions { path: path.to_owned(), mode });
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io)?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests;
