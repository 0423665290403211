use super::*;

/// `(address, None)` is a public destination; `Some(word)`: refused, the reason containing `word`.
const TABLE: &[(&str, Option<&str>)] = &[
    // IPv4: public.
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.216.34", None),
    ("100.63.255.255", None),
    ("100.128.0.1", None),
    ("172.15.255.255", None),
    ("172.32.0.1", None),
    ("192.88.99.1", None),
    ("223.255.255.255", None),
    // IPv4: refused.
    ("127.0.0.1", Some("loopback")),
    ("127.255.255.254", Some("loopback")),
    ("10.0.0.1", Some("private")),
    ("172.16.0.1", Some("private")),
    ("172.31.255.255", Some("private")),
    ("192.168.1.1", Some("private")),
    ("169.254.169.254", Some("metadata")),
    ("169.254.0.1", Some("link-local")),
    ("100.64.0.1", Some("carrier-grade NAT")),
    ("100.127.255.255", Some("carrier-grade NAT")),
    ("0.0.0.0", Some("unspecified")),
    ("0.1.2.3", Some("unspecified")),
    ("255.255.255.255", Some("broadcast")),
    ("224.0.0.1", Some("multicast")),
    ("239.255.255.250", Some("multicast")),
    ("192.0.2.1", Some("documentation")),
    ("198.51.100.7", Some("documentation")),
    ("203.0.113.9", Some("documentation")),
    ("192.0.0.170", Some("IETF")),
    ("198.18.0.1", Some("benchmarking")),
    ("240.0.0.1", Some("reserved")),
    // IPv6: public.
    ("2606:4700:4700::1111", None),
    ("2001:4860:4860::8888", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),
    ("2002:808:808::1", None),
    // IPv6: refused.
    ("::", Some("unspecified")),
    ("::1", Some("loopback")),
    ("fe80::1", Some("link-local")),
    ("febf:ffff::1", Some("link-local")),
    ("fc00::1", Some("unique-local")),
    ("fd12:3456:789a::1", Some("unique-local")),
    ("fd00:ec2::254", Some("metadata")),
    ("fec0::1", Some("site-local")),
    ("ff02::1", Some("multicast")),
    ("ff05::1:3", Some("multicast")),
    ("2001:db8::1", Some("documentation")),
    ("3fff::1", Some("documentation")),
    ("2001:2::1", Some("benchmarking")),
    ("100::1", Some("discard-only")),
    ("64:ff9b:1::1", Some("local-use NAT64")),
    ("4000::1", Some("not global unicast")),
    // IPv4 inside IPv6: the embedded address decides.
    ("::ffff:127.0.0.1", Some("IPv4-mapped form of a loopback")),
    ("::ffff:169.254.169.254", Some("IPv4-mapped form of a cloud metadata")),
    ("::ffff:10.1.2.3", Some("IPv4-mapped form of a private")),
    ("::ffff:0:192.168.0.1", Some("IPv4-translated form of a private")),
    ("::127.0.0.1", Some("IPv4-compatible form of a loopback")),
    ("::10.0.0.1", Some("IPv4-compatible form of a private")),
    ("64:ff9b::7f00:1", Some("NAT64 form of a loopback")),
    ("64:ff9b::a9fe:a9fe", Some("NAT64 form of a cloud metadata")),
    ("2002:7f00:1::", Some("6to4 form of a loopback")),
    ("2002:a00:1::1", Some("6to4 form of a private")),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some("Teredo form of a loopback")),
];

#[test]
fn every_address_form_in_the_table_is_allowed_or_refused_for_its_reason() {
    assert!(TABLE.len() >= 30);
    for (text, expected) in TABLE {
        let address: IpAddr = text.parse().expect("an address");
        let found = refusal(address).map(|r| r.to_string());
        match (expected, &found) {
            (None, None) => {}
            (Some(word), Some(reason)) if reason.contains(word) => {}
            _ => panic!("{text}: expected {expected:?}, found {found:?}"),
        }
    }
}

fn sock(text: &str) -> SocketAddr {
    SocketAddr::new(text.parse().expect("an address"), 443)
}

fn allow(entries: &[&str]) -> AllowList {
    AllowList::new(entries.iter().map(|e| e.parse().expect("a valid entry")).collect())
}

#[test]
fn a_host_with_only_refused_addresses_is_refused_and_a_mixed_one_keeps_its_public_ones() {
    let none = AllowList::default();
    let err = vet(&none, "evil.example", vec![sock("127.0.0.1"), sock("::1")]).expect_err("refused");
    assert!(err.to_string().starts_with("evil.example resolves only to refused addresses (2 in all)"), "{err}");
    assert_eq!(vet(&none, "mixed.example", vec![sock("10.0.0.1"), sock("8.8.8.8")]), Ok(vec![sock("8.8.8.8")]));
}

#[test]
fn the_allow_list_lets_blocks_hosts_and_subdomains_through() {
    let list = allow(&["127.0.0.0/8", "receiver.hooks.svc.cluster.local", "*.internal.example", "fd00::5"]);
    assert_eq!(vet(&list, "localhost", vec![sock("127.0.0.1")]), Ok(vec![sock("127.0.0.1")]));
    assert!(vet(&list, "localhost", vec![sock("::1")]).is_err(), "the block is IPv4 only");
    assert!(vet(&list, "Receiver.Hooks.svc.cluster.local.", vec![sock("10.96.0.10")]).is_ok());
    assert!(vet(&list, "a.b.internal.example", vec![sock("10.0.0.1")]).is_ok());
    assert!(vet(&list, "internal.example", vec![sock("10.0.0.1")]).is_err(), "a wildcard is subdomains only");
    assert!(vet(&list, "xinternal.example", vec![sock("10.0.0.1")]).is_err());
    assert!(vet_literal(&list, "[fd00::5]").is_ok());
    assert!(vet_literal(&list, "[fd00::6]").is_err());
    assert!(vet_literal(&AllowList::default(), "169.254.169.254").is_err());
    assert!(vet_literal(&AllowList::default(), "hooks.example").is_ok(), "names are vetted when resolved");
}

#[test]
fn malformed_allow_list_entries_are_rejected() {
    for bad in ["", "10.0.0.0/33", "http://x", "a b", "*.", "bad_name.example", "1.2.3.4/8/1"] {
        assert!(bad.parse::<AllowedTarget>().is_err(), "{bad:?}");
    }
    assert_eq!("10.1.2.3/8".parse(), Ok(AllowedTarget::Net("10.0.0.0/8".parse().expect("net"))));
}
