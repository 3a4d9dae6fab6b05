//! PostgreSQL specifics of the SQL store: the connection URL built from
//! `service.postgres` (TLS, statement timeout, the instance's name as the
//! session's `application_name`), the advisory-lock keys, and how a
//! connection failure is told to the person starting verdict.

use std::fmt::Write as _;

use crate::config::{PgSslMode, PostgresSpec};

/// Advisory lock held while migrating: instances that start at once
/// migrate one after the other. (`'vrdm'` as a number.)
pub const MIGRATION_LOCK: i64 = 0x7672_646d;

/// Advisory lock of the cluster's leader. (`'vrdl'` as a number.)
pub const LEADER_LOCK: i64 = 0x7672_646c;

/// `text` with every byte outside RFC 3986's unreserved set percent-encoded.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The URL sqlx connects with: the configured one plus the settings of
/// `service.postgres` as libpq-style parameters.
pub fn connect_url(spec: &PostgresSpec) -> String {
    let mut params = vec![
        format!("sslmode={}", spec.tls.mode.as_str()),
        format!(
            "application_name={}",
            encode(&format!("verdict {}", spec.instance))
        ),
        format!(
            "options={}",
            encode(&format!(
                "-c statement_timeout={}",
                spec.statement_timeout.as_millis().max(1)
            ))
        ),
    ];
    if let Some(ca) = &spec.tls.ca_file {
        params.push(format!("sslrootcert={}", encode(&ca.to_string_lossy())));
    }
    if let Some((cert, key)) = &spec.tls.identity {
        params.push(format!("sslcert={}", encode(&cert.to_string_lossy())));
        params.push(format!("sslkey={}", encode(&key.to_string_lossy())));
    }
    debug_assert!(!matches!(spec.tls.mode, PgSslMode::Disable) || spec.tls.ca_file.is_none());
    format!("{}?{}", spec.url, params.join("&"))
}

/// A connection failure as a sentence that says what to check.
pub fn describe_connect_error(err: &sqlx::Error) -> String {
    let text = err.to_string();
    let hint = if let Some(db) = err.as_database_error() {
        match db.code().as_deref() {
            Some("28P01") => " (wrong password: check the password in service.storage)",
            Some("28000") => {
                " (the server refused this user: check the user in service.storage and pg_hba.conf)"
            }
            Some("3D000") => " (the database does not exist: create it first)",
            _ => "",
        }
    } else if matches!(err, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) {
        " (is PostgreSQL running and reachable at the host and port of service.storage?)"
    } else if matches!(err, sqlx::Error::Tls(_)) {
        " (check service.postgres.tls)"
    } else {
        ""
    };
    format!("cannot connect to PostgreSQL: {text}{hint}")
}

/// Whether `err` is one a retry of the same statement can cure: a
/// serialization failure (40001) or a deadlock (40P01).
pub fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40001" || code == "40P01")
}

/// The URL of the leader's own connection: the pool's, plus TCP
/// keepalives the server sends on it, so that a leader whose host vanishes
/// without closing the connection loses the lock within about 10 s rather
/// than at the operating system's default (hours).
pub fn leader_url(spec: &PostgresSpec) -> String {
    format!(
        "{}&options={}",
        connect_url(spec),
        encode("-c tcp_keepalives_idle=4 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PostgresTls;
    use std::time::Duration;

    #[test]
    fn the_url_carries_the_settings_encoded() {
        let spec = PostgresSpec {
            url: "postgres://v:p%40ss@db:5432/verdict".into(),
            pool_size: 4,
            statement_timeout: Duration::from_millis(2500),
            instance: "a b/1".into(),
            grace: Duration::from_secs(2),
            tls: PostgresTls {
                mode: PgSslMode::VerifyFull,
                ca_file: Some("/etc/ca.pem".into()),
                identity: None,
            },
        };
        assert_eq!(
            connect_url(&spec),
            "postgres://v:p%40ss@db:5432/verdict?sslmode=verify-full\
             &application_name=verdict%20a%20b%2F1\
             &options=-c%20statement_timeout%3D2500&sslrootcert=%2Fetc%2Fca.pem"
        );
        assert_eq!(spec.redacted(), "postgres://v:***@db:5432/verdict");
    }
}
