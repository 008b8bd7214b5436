"""Configuration: defaults, precedence, and one clear ConfigError per mistake."""

from __future__ import annotations

import pytest

from agent_factory.config import load_config
from agent_factory.errors import ConfigError

URL = "postgresql://agent:s3cret-pw@db.example.com:5433/app"


def test_defaults_match_the_runbook():
    config = load_config(env={"NEON_DB_URL": URL}, env_file=None)
    assert config.primary == "neon"
    assert config.failover_enabled is True
    assert config.failover_order == ("neon",)
    assert (config.pool_min_size, config.pool_max_size, config.pool_timeout) == (1, 10, 5.0)
    assert config.health_ttl == 60.0 and config.failback_checks == 3 and config.connect_timeout == 5


def test_environment_wins_over_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"NEON_DB_URL={URL}\nDATABASE_POOL_MAX_SIZE=7\nDATABASE_HEALTH_TTL=9\n")
    config = load_config(env={"DATABASE_POOL_MAX_SIZE": "20"}, env_file=env_file)
    assert config.pool_max_size == 20
    assert config.health_ttl == 9.0


def test_supabase_host_and_password_form():
    config = load_config(
        env={"NEON_DB_URL": URL, "SUPABASE_DB_HOST": "db.abc.supabase.co", "SUPABASE_DB_PASSWORD": "pw-xyz"},
        env_file=None,
    )
    assert config.providers["supabase"].host == "db.abc.supabase.co:5432/postgres"
    assert config.failover_order == ("neon", "supabase")


def test_extra_provider_listed_in_failover_order():
    config = load_config(
        env={"NEON_DB_URL": URL, "AIVEN_DB_URL": URL.replace("db.example", "aiven.example"),
             "DATABASE_FAILOVER_ORDER": "neon,aiven"},
        env_file=None,
    )
    assert config.failover_order == ("neon", "aiven")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NEON_DB_URL": URL, "DATABASE_PROVIDER": "mongo"}, "MONGO_DB_URL"),
        ({"NEON_DB_URL": URL, "DATABASE_PROVIDER": "supabase"}, "SUPABASE_DB_URL"),
        ({"NEON_DB_URL": "mysql://x:y@h/d"}, "NEON_DB_URL"),
        ({"NEON_DB_URL": "postgresql://a:b@h:99999/d"}, "NEON_DB_URL"),
        ({"NEON_DB_URL": "not a url at all =="}, "NEON_DB_URL"),
        ({"NEON_DB_URL": URL, "DATABASE_POOL_MIN_SIZE": "5", "DATABASE_POOL_MAX_SIZE": "2"}, "DATABASE_POOL_MIN_SIZE"),
        ({"NEON_DB_URL": URL, "DATABASE_POOL_TIMEOUT": "soon"}, "DATABASE_POOL_TIMEOUT"),
        ({"NEON_DB_URL": URL, "DATABASE_CONNECT_TIMEOUT": "1"}, "DATABASE_CONNECT_TIMEOUT"),
        ({"NEON_DB_URL": URL, "DATABASE_FAILOVER_ENABLED": "maybe"}, "DATABASE_FAILOVER_ENABLED"),
        ({"NEON_DB_URL": URL, "DATABASE_FAILOVER_ORDER": "neon,neon"}, "DATABASE_FAILOVER_ORDER"),
        ({"NEON_DB_URL": URL, "DATABASE_FAILOVER_ORDER": "neon,Bad-Name"}, "DATABASE_FAILOVER_ORDER"),
        ({}, "NEON_DB_URL"),
        ({"NEON_DB_URL": URL, "NEON_PREPARED_STATEMENTS": "sometimes"}, "NEON_PREPARED_STATEMENTS"),
        ({"NEON_DB_URL": URL, "NEON_DIRECT_URL": "mysql://agent:s3cret-pw@h/d"}, "NEON_DIRECT_URL"),
        ({"NEON_DB_URL": URL, "NEON_DIRECT_URL": "postgresql://agent:s3cret-pw@h:0/d"}, "NEON_DIRECT_URL"),
        ({"NEON_DB_URL": URL, "SUPABASE_DIRECT_URL": URL}, "SUPABASE_DIRECT_URL"),
    ],
)
def test_bad_configuration_names_the_variable(env, names):
    with pytest.raises(ConfigError) as info:
        load_config(env=env, env_file=None)
    message = str(info.value)
    assert names in message
    assert "s3cret-pw" not in message


def test_repr_and_host_never_show_the_password():
    config = load_config(env={"NEON_DB_URL": URL}, env_file=None)
    provider = config.providers["neon"]
    assert provider.host == "db.example.com:5433/app"
    for text in (repr(config), str(config), repr(provider), str(provider)):
        assert "s3cret-pw" not in text


def test_prepared_statements_per_provider_default_on():
    config = load_config(env={"NEON_DB_URL": URL, "SUPABASE_DB_URL": URL, "RAILWAY_DB_URL": URL,
                              "SUPABASE_PREPARED_STATEMENTS": "false", "RAILWAY_PREPARED_STATEMENTS": "yes"},
                         env_file=None)
    assert {n: p.prepared_statements for n, p in config.providers.items()} == {
        "neon": True, "supabase": False, "railway": True}


def test_transaction_pooler_port_with_prepared_statements_is_warned_about(caplog):
    pooler = "postgresql://postgres.abc:pw@aws-0-eu.pooler.supabase.com:6543/postgres"
    load_config(env={"NEON_DB_URL": URL, "SUPABASE_DB_URL": pooler}, env_file=None)
    assert "SUPABASE_PREPARED_STATEMENTS=false" in caplog.text
    caplog.clear()
    load_config(env={"NEON_DB_URL": URL, "SUPABASE_DB_URL": pooler, "SUPABASE_PREPARED_STATEMENTS": "false"},
                env_file=None)
    assert caplog.text == ""


def test_direct_url_is_optional_and_falls_back_to_the_main_url():
    direct = URL.replace("db.example.com", "direct.example.com")
    config = load_config(env={"NEON_DB_URL": URL, "NEON_DIRECT_URL": direct, "SUPABASE_DB_URL": URL}, env_file=None)
    neon, supabase = config.providers["neon"], config.providers["supabase"]
    assert supabase.direct_url is None and supabase.session_url == supabase.url
    assert neon.direct_url is not None and neon.session_url == neon.direct_url
    assert "direct.example.com" in neon.session_url and "db.example.com" in neon.url
    assert "s3cret-pw" not in repr(neon) and "s3cret-pw" not in str(config)


@pytest.mark.parametrize("url, extra, why", [
    ("postgresql://postgres.abc:s3cret-pw@aws-0-eu.pooler.supabase.com:6543/postgres", {}, "port 6543"),
    ("postgresql://owner:s3cret-pw@ep-cool-1-pooler.us-east-1.aws.neon.tech/neondb", {}, "-pooler in the host"),
    ("postgresql://u:s3cret-pw@127.0.0.1:6432/db", {"NEON_POOLER": "transaction"}, "NEON_POOLER=transaction"),
])
def test_a_transaction_pooler_without_a_direct_url_refuses_sessions_naming_the_variable(url, extra, why):
    from agent_factory.errors import DirectUrlRequiredError

    neon = load_config(env={"NEON_DB_URL": url, **extra}, env_file=None).providers["neon"]
    assert neon.transaction_pooler == why
    with pytest.raises(DirectUrlRequiredError) as raised:
        neon.session_url_for("backup")
    message = str(raised.value)
    assert "NEON_DIRECT_URL" in message and "backup" in message and why in message and "\n" not in message
    assert "s3cret-pw" not in message
    direct = load_config(env={"NEON_DB_URL": url, "NEON_DIRECT_URL": URL, **extra}, env_file=None)
    assert "db.example.com" in direct.providers["neon"].session_url_for("backup")


def test_pooler_setting_overrides_the_guess_and_is_validated():
    pooled = "postgresql://u:pw@db.example.com:6543/db"
    config = load_config(env={"NEON_DB_URL": pooled, "NEON_POOLER": "none"}, env_file=None)
    assert config.providers["neon"].transaction_pooler is None
    assert config.providers["neon"].session_url_for("sync") == config.providers["neon"].url
    with pytest.raises(ConfigError, match="NEON_POOLER='statement' is not one of transaction, session, none"):
        load_config(env={"NEON_DB_URL": pooled, "NEON_POOLER": "statement"}, env_file=None)


def test_every_unknown_provider_refusal_is_one_error_naming_the_configured_ones(make_db):
    import pickle

    from agent_factory.errors import UnknownProviderError
    from agent_factory.ops.schema_ops import deploy
    from agent_factory.replication import sync_pair

    db = make_db()
    refusals = [lambda: db.config.provider("nope"), lambda: db.set_provider("nope"),
                lambda: sync_pair(db, "nope", "neon"), lambda: deploy(db, "nope", check=True)]
    for refuse in refusals:
        with pytest.raises(UnknownProviderError) as caught:
            refuse()
        assert isinstance(caught.value, ConfigError) and caught.value.name == "nope"
        assert str(caught.value).startswith("unknown provider 'nope'; configured providers: ")
        assert set(caught.value.configured) == set(db.providers)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), str(copy)) == (UnknownProviderError, str(caught.value))
