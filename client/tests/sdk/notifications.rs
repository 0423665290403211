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

    // A picture: uploaded from a file, read back through the SDK by a colleague, then removed.
    let picture = app.home.0.join("bob.png");
    let png = [&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], &[7u8; 100]].concat();
    std::fs::write(&picture, &png).expect("picture");
    let path = picture.to_str().expect("utf-8");
    let out = app.cli(&["--profile", "bob", "profile", "avatar", path]).await.expect("avatar");
    assert!(out.contains(&format!("uploaded, image/png, {} bytes", png.len())), "{out}");
    let (media_type, bytes) =
        alice.messenger.client().member_avatar(org.parse().expect("org id"), bob.user_id).await.expect("avatar");
    assert_eq!((media_type.as_str(), bytes), ("image/png", png.clone()));
    let gif = app.home.0.join("bob.gif");
    std::fs::write(&gif, b"GIF89a").expect("gif");
    let err = app.cli(&["--profile", "bob", "profile", "avatar", gif.to_str().expect("utf-8")]).await.expect_err("gif");
    assert!(format!("{err:#}").contains(".png, .jpg or .webp"), "{err:#}");
    std::fs::write(&picture, b"not a picture at all").expect("overwrite");
    let err = app.cli(&["--profile", "bob", "profile", "avatar", path]).await.expect_err("not a png");
    assert!(format!("{err:#}").contains("not an image of type image/png"), "{err:#}");
    let out = app.cli(&["--profile", "bob", "profile", "avatar", "--remove"]).await.expect("remove");
    assert!(out.contains("avatar:    -"), "{out}");

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
