//! The CLI's profile and notification commands, and a member who is not an admin adding a
//! colleague by exact email (the lookup), against a real data plane.

use crate::messaging::group;
use crate::support::TestApp;

#[tokio::test]
async fn the_cli_sets_a_profile_and_notification_preferences_and_finds_a_colleague_by_email() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    // Carol joins the organization as a plain member.
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(org)
        .bind(carol.user_id)
        .execute(&app.db.owner)
        .await
        .expect("membership");
    let (org, conversation) = (org.to_string(), conversation.to_string());

    let out = app
        .cli(&[
            "--profile",
            "bob",
            "profile",
            "set",
            "--display-name",
            "Bob B.",
            "--status",
            "in the lab",
            "--time-zone",
            "Europe/Paris",
        ])
        .await
        .expect("profile set");
    assert!(out.contains("Bob B.") && out.contains("Europe/Paris"), "{out}");
    let err = app.cli(&["--profile", "bob", "profile", "set", "--time-zone", "Mars/Base"]).await.expect_err("refused");
    assert!(format!("{err:#}").contains("time zone"), "{err:#}");

    // Bob is a member, not an admin: he finds Carol by her exact address, and adds her.
    let out = app
        .cli(&["--profile", "bob", "profile", "show", "--org", &org, "--member", "carol@example.org"])
        .await
        .expect("lookup");
    assert!(out.contains(&carol.user_id.to_string()), "{out}");
    let err = app
        .cli(&["--profile", "bob", "profile", "show", "--org", &org, "--member", "nobody@example.org"])
        .await
        .expect_err("unknown");
    assert!(format!("{err:#}").contains("not found"), "{err:#}");

    let out = app
        .cli(&[
            "--profile",
            "bob",
            "notifications",
            "set",
            "--level",
            "mentions",
            "--quiet-hours",
            "22:00-07:00",
            "--email",
            "true",
            "--mute-for",
            "2h",
        ])
        .await
        .expect("notifications set");
    assert!(out.contains("level:        mentions"), "{out}");
    assert!(out.contains("22:00-07:00 (Europe/Paris)"), "{out}");
    let out = app
        .cli(&[
            "--profile",
            "bob",
            "notifications",
            "override",
            "--org",
            &org,
            "--conversation",
            &conversation,
            "--level",
            "all",
        ])
        .await
        .expect("override");
    assert!(out.contains("Override set"), "{out}");
    let out = app.cli(&["--profile", "bob", "notifications", "overrides", "--org", &org]).await.expect("overrides");
    assert!(out.contains(&format!("conversation {conversation}")) && out.contains(" all"), "{out}");
    let out = app.cli(&["--profile", "bob", "notifications", "unread", "--org", &org]).await.expect("unread");
    assert!(out.contains("total  0"), "{out}");
    let out = app
        .cli(&["--profile", "bob", "notifications", "set", "--unmute", "--quiet-hours", "off"])
        .await
        .expect("unmute");
    assert!(out.contains("muted until:  -") && out.contains("quiet hours:  -"), "{out}");
}
