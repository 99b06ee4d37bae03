//! The documented example configuration parses, and documents every field of the configuration type.

use canal_instance::config::{Settings, parse};

const EXAMPLE: &str = include_str!("../../examples/standalone.yaml");

#[test]
fn example_config_is_valid() {
    let config = parse(EXAMPLE).expect("examples/standalone.yaml parses");
    let settings = Settings::from_config(config, &|name| (name == "CANAL_SOURCE_PASSWORD").then(|| "x".into()))
        .expect("examples/standalone.yaml validates");
    assert_eq!(settings.config.destination, "example");
    assert_eq!(settings.config.server.port, 11111);
}

#[test]
fn example_config_shows_the_defaults() {
    // Parsing only the required fields must give the same configuration as the commented example.
    let minimal =
        parse("destination: example\nsource:\n  address: 127.0.0.1:3306\n  username: canal\n").expect("minimal config");
    assert_eq!(
        parse(EXAMPLE).unwrap(),
        minimal,
        "examples/standalone.yaml drifted from the defaults"
    );
}

#[test]
fn zookeeper_example_is_valid() {
    let text = include_str!("../../examples/zookeeper.yaml");
    let config = parse(text).expect("examples/zookeeper.yaml parses");
    let zookeeper = config.zookeeper.clone().expect("has a zookeeper section");
    assert_eq!(
        (zookeeper.session_timeout_seconds, zookeeper.failover_delay_seconds),
        (10, 5)
    );
    Settings::from_config(config, &|name| (name == "CANAL_SOURCE_PASSWORD").then(|| "x".into()))
        .expect("examples/zookeeper.yaml validates");
}
