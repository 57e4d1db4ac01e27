"""Settings precedence: flag > environment > TOML file > default; bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.config import Secret, Settings, load_settings
from podium.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert settings.base_url == "http://127.0.0.1:8080"
    assert not settings.secure_cookies


def test_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "podium.toml"
    toml.write_text('port = 7000\nhost = "0.0.0.0"\nlog_format = "human"\nopen_signup = false\n')
    environ = {"PODIUM_PORT": "7100", "PODIUM_LOG_FORMAT": "json"}
    settings = load_settings({"port": 7200, "host": None}, environ=environ, config_file=toml)
    assert settings.port == 7200  # flag beats environment and file
    assert settings.log_format == "json"  # environment beats file
    assert settings.host == "0.0.0.0"  # file beats default; an absent flag is no flag
    assert settings.open_signup is False


def test_bad_values_are_named_with_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment PODIUM_PORT"):
        load_settings({}, environ={"PODIUM_PORT": "eighty"})
    with pytest.raises(ConfigError, match="must be one of json, human"):
        load_settings({"log_format": "xml"}, environ={})
    toml = tmp_path / "bad.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({}, environ={}, config_file=toml)
    toml.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, environ={}, config_file=toml)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, environ={}, config_file=tmp_path / "missing.toml")


def test_secrets_never_show_themselves() -> None:
    key = "k" * 40
    settings = load_settings({}, environ={"PODIUM_SECRET_KEY": key})
    assert isinstance(settings.secret_key, Secret)
    assert settings.secret_key.value == key
    assert key not in repr(settings)
    assert key not in str(settings.secret_key)
    with pytest.raises(ConfigError) as error:
        load_settings({}, environ={"PODIUM_SECRET_KEY": "short-secret"})
    assert "short-secret" not in str(error.value)


def test_public_url_drives_links_and_cookie_security() -> None:
    settings = load_settings({"public_url": "https://spaces.example/"}, environ={})
    assert settings.base_url == "https://spaces.example"
    assert settings.secure_cookies


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    from podium.config import load_settings
    from podium.errors import ConfigError

    settings = load_settings({}, environ={"PODIUM_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert settings.trusted_proxies == "10.0.0.0/8, ::1"
    with pytest.raises(ConfigError, match="not an address"):
        load_settings({}, environ={"PODIUM_TRUSTED_PROXIES": "edge.example"})


FLEET = {
    "PODIUM_DATABASE_URL": "postgresql://podium@db/podium",
    "PODIUM_REDIS_URL": "redis://cache:6379/0",
    "PODIUM_MEDIA_SECRET": "s" * 40,
}


def test_a_web_or_media_node_needs_what_the_fleet_shares() -> None:
    with pytest.raises(ConfigError, match="role web needs database_url, redis_url, media_se"):
        load_settings({"role": "web"}, environ={})
    with pytest.raises(ConfigError, match="role media needs media_secret"):
        load_settings(
            {"role": "media"},
            environ={k: v for k, v in FLEET.items() if k != "PODIUM_MEDIA_SECRET"},
        )
    # A web node finds media nodes in the registry; one it is given is followed at once.
    assert load_settings({"role": "web"}, environ=FLEET).media_url == ""
    with pytest.raises(ConfigError, match="media_url: must be an http"):
        load_settings({"role": "web", "media_url": "media:8080"}, environ=FLEET)
    web = load_settings({"role": "web", "media_url": "http://media:8080"}, environ=FLEET)
    assert web.role == "web"
    assert "s" * 40 not in repr(web)
    media = load_settings({"role": "media", "port": "8081"}, environ=FLEET)
    assert media.role == "media"
    # Where web nodes reach a media node: as it listens, unless it is told.
    assert media.fleet_url == "http://127.0.0.1:8081"
    told = {"role": "media", "internal_url": "http://media-2.internal:8080/"}
    assert load_settings(told, environ=FLEET).fleet_url == "http://media-2.internal:8080"
    with pytest.raises(ConfigError, match="internal_url: must be an http"):
        load_settings({"role": "media", "internal_url": "media-2:8080"}, environ=FLEET)
    public = {"role": "web", "public_url": "https://podium.example"}
    assert load_settings(public, environ=FLEET).fleet_url == "https://podium.example"
    with pytest.raises(ConfigError, match="must be one of all, web, media"):
        load_settings({"role": "edge"}, environ={})


def test_ice_servers_are_stun_and_turn_urls_and_turn_needs_its_secret(tmp_path: Path) -> None:
    secret = "t" * 32
    settings = load_settings(
        {},
        {
            "PODIUM_ICE_SERVERS": "stun:stun.example.net, turn:[2001:db8::1]:3478?transport=tcp",
            "PODIUM_TURN_SECRET": secret,
        },
    )
    assert settings.ice_servers == "stun:stun.example.net, turn:[2001:db8::1]:3478?transport=tcp"
    assert secret not in repr(settings)
    config = tmp_path / "podium.toml"
    config.write_text(
        'ice_servers = ["stun:a.example.net", "turns:a.example.net:443?transport=tcp"]\n'
        f'turn_secret = "{secret}"\n'
    )
    from_file = load_settings({}, {}, config)
    assert from_file.ice_servers == "stun:a.example.net, turns:a.example.net:443?transport=tcp"
    for bad, says in [
        ("https://turn.example.net", "not a STUN or TURN URL"),
        ("turn:turn.example.net:70000", "not a STUN or TURN URL"),
        ("turn:turn.example.net?transport=sctp", "not a STUN or TURN URL"),
        ("stun:stun.example.net?transport=tcp", "a STUN URL has no transport"),
    ]:
        with pytest.raises(ConfigError, match=says):
            load_settings({}, {"PODIUM_ICE_SERVERS": bad, "PODIUM_TURN_SECRET": secret})
    with pytest.raises(ConfigError, match="set turn_secret"):
        load_settings({}, {"PODIUM_ICE_SERVERS": "turn:turn.example.net"})
    with pytest.raises(ConfigError, match="PODIUM_TURN_SECRET: invalid value \\(secret\\)"):
        load_settings({}, {"PODIUM_TURN_SECRET": "short"})
    with pytest.raises(ConfigError, match="turn_credentials_ttl_s"):
        load_settings({}, {"PODIUM_TURN_CREDENTIALS_TTL_S": "10"})


def test_the_public_address_is_an_ip_address() -> None:
    assert load_settings({}, {"PODIUM_PUBLIC_ADDRESS": "203.0.113.7"}).public_address
    with pytest.raises(ConfigError, match="public_address"):
        load_settings({}, {"PODIUM_PUBLIC_ADDRESS": "vm.example.net"})
