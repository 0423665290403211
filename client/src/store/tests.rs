use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("conclave-store-test-{}", Uuid::new_v4())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

fn session() -> Session {
    Session {
        version: SESSION_VERSION,
        server: "http://127.0.0.1:8080".into(),
        user_id: Uuid::new_v4(),
        email: "alice@example.org".into(),
        device_id: Uuid::new_v4(),
        tokens: Tokens { access_token: "access-secret".into(), refresh_token: "refresh-secret".into() },
    }
}

#[test]
fn a_profile_directory_and_its_session_are_private_to_the_owner() {
    let temp = TempDir::new();
    let profile = Profile::open(temp.0.join("nested").join("alice")).expect("open");
    assert_eq!(mode(profile.dir()), 0o700);
    assert_eq!(profile.load_session().expect("load"), None);
    let saved = session();
    profile.save_session(&saved).expect("save");
    assert_eq!(mode(&profile.session_path()), 0o600);
    assert_eq!(profile.load_session().expect("load"), Some(saved));
}

#[test]
fn a_session_file_others_can_read_is_refused() {
    let temp = TempDir::new();
    let profile = Profile::open(&temp.0).expect("open");
    profile.save_session(&session()).expect("save");
    fs::set_permissions(profile.session_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(profile.load_session(), Err(StoreError::InsecurePermissions { mode: 0o644, .. })));
}

#[test]
fn saving_replaces_the_session_whole_and_leaves_no_temporary_file() {
    let temp = TempDir::new();
    let profile = Profile::open(&temp.0).expect("open");
    let first = session();
    profile.save_session(&first).expect("save");
    let sink = profile.token_sink(first.clone());
    let next = Tokens { access_token: "access-2".into(), refresh_token: "refresh-2".into() };
    sink.store(&next).expect("store");
    let loaded = profile.load_session().expect("load").expect("present");
    assert_eq!(loaded.tokens, next);
    assert_eq!(loaded.user_id, first.user_id);
    let names: Vec<_> = fs::read_dir(&temp.0).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("session.json")], "no temporary file is left behind");
    profile.remove_session().expect("remove");
    profile.remove_session().expect("removing twice is fine");
    assert_eq!(profile.load_session().expect("load"), None);
}

#[test]
fn debug_output_shows_no_token() {
    let text = format!("{:?}", session());
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn profile_directories_follow_conclave_home_then_xdg_then_home() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(Profile::dir_in("work", p("/c"), p("/x"), p("/h")).expect("dir"), PathBuf::from("/c/profiles/work"));
    assert_eq!(Profile::dir_in("work", None, p("/x"), p("/h")).expect("dir"), PathBuf::from("/x/conclave/work"));
    assert_eq!(Profile::dir_in("work", None, None, p("/h")).expect("dir"), PathBuf::from("/h/.config/conclave/work"));
    assert!(matches!(Profile::dir_in("work", None, None, None), Err(StoreError::NoHome)));
    for bad in ["", "../x", "a/b", ".", &"x".repeat(65)] {
        assert!(matches!(Profile::dir_in(bad, p("/c"), None, None), Err(StoreError::InvalidProfileName(_))), "{bad}");
    }
}

#[test]
fn a_keystore_is_created_once_then_loaded() {
    let temp = TempDir::new();
    let profile = Profile::open(&temp.0).expect("open");
    let (created, fresh) = profile.load_or_create_keystore().expect("create");
    assert!(fresh);
    let (loaded, fresh) = profile.load_or_create_keystore().expect("load");
    assert!(!fresh);
    assert_eq!(created.device().public(), loaded.device().public());
    assert_eq!(mode(&profile.keystore_path()), 0o600);
}
