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

/// The TLS error inside `err`, when the handshake failed: sqlx reports a
/// refused certificate as an I/O error carrying rustls's error.
fn tls_error(err: &sqlx::Error) -> Option<&rustls::Error> {
    match err {
        sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        sqlx::Error::Tls(e) => e.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// What to check when the server's certificate was refused.
fn tls_hint(err: &rustls::Error) -> &'static str {
    use crate::tls::TlsFailure;
    match TlsFailure::of(err) {
        TlsFailure::UnknownIssuer => {
            " (certificate problem: unknown issuer: the server's certificate is not signed by a \
             CA this machine trusts; set service.postgres.tls.ca_file to the CA that signed it)"
        }
        TlsFailure::NameMismatch => {
            " (certificate problem: name mismatch: the server's certificate was not issued for \
             the host of service.storage; connect by a name it was issued for)"
        }
        TlsFailure::Expired => " (certificate problem: the server's certificate has expired)",
        TlsFailure::NotValidYet => {
            " (certificate problem: the server's certificate is not valid yet)"
        }
        TlsFailure::Certificate => {
            " (certificate problem: the server's certificate was refused; check service.postgres.tls)"
        }
        TlsFailure::Handshake => " (TLS handshake failed: check service.postgres.tls)",
    }
}

/// A connection failure as a sentence that says what to check.
pub fn describe_connect_error(err: &sqlx::Error) -> String {
    let text = err.to_string();
    let hint = if let Some(tls) = tls_error(err) {
        tls_hint(tls)
    } else if let Some(db) = err.as_database_error() {
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

    /// Whether this store's connection is encrypted, as the server sees it.
    async fn encrypted(store: &crate::storage::SqlStore) -> bool {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
        )
        .fetch_one(&store.pool)
        .await
        .expect("pg_stat_ssl");
        sqlx::Row::get::<i64, _>(&row, "n") == 1
    }

    fn tls_spec(url: &str, mode: PgSslMode, ca: Option<&std::path::Path>) -> PostgresSpec {
        let mut spec = crate::storage::testing::spec(url, "tls");
        spec.tls = PostgresTls {
            mode,
            ca_file: ca.map(Into::into),
            identity: None,
        };
        spec
    }

    /// `mode: require` encrypts the connection (the server says so in
    /// `pg_stat_ssl`); `disable` does not, so the check means something.
    #[tokio::test]
    async fn require_encrypts_the_connection() {
        let Some(t) = crate::storage::testing::TlsDatabase::create().await else {
            return;
        };
        for (mode, expected) in [(PgSslMode::Require, true), (PgSslMode::Disable, false)] {
            let store = crate::storage::SqlStore::open_postgres(&tls_spec(&t.db.url, mode, None))
                .await
                .expect("opens");
            assert_eq!(encrypted(&store).await, expected, "{mode:?}");
        }
    }

    /// `verify-full` connects, encrypted, with the CA of the server's
    /// certificate and the host name it was issued for; by another name,
    /// opening fails with the certificate problem named. (Without the CA:
    /// `tls_to_postgres_is_verified_at_start` in the integration tests,
    /// whose process is given system roots without it.)
    #[tokio::test]
    async fn verify_full_checks_the_certificate() {
        let Some(t) = crate::storage::testing::TlsDatabase::create().await else {
            return;
        };
        let ca = Some(t.ca.as_path());
        let store = crate::storage::SqlStore::open_postgres(&tls_spec(
            &t.url_by_name,
            PgSslMode::VerifyFull,
            ca,
        ))
        .await
        .expect("opens with the CA");
        assert!(encrypted(&store).await);
        // The admin URL names the server otherwise (127.0.0.1) unless it
        // is configured by the certificate's own name.
        if t.db.url != t.url_by_name {
            let err = crate::storage::SqlStore::open_postgres(&tls_spec(
                &t.db.url,
                PgSslMode::VerifyFull,
                ca,
            ))
            .await
            .expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains("certificate problem: name mismatch"),
                "{text}"
            );
            assert!(!text.contains("is PostgreSQL running"), "{text}");
        }
    }
}
