//! A PostgreSQL database of a test's own: created on the server named by
//! `VERDICT_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! an account that may create databases) and dropped when the test ends,
//! so PostgreSQL tests run in parallel without seeing each other's rows.
//!
//! Without a reachable server the tests that need one skip, with one line
//! on stderr saying how to enable them — unless `VERDICT_REQUIRE_POSTGRES=1`
//! (CI sets it), where an unreachable server fails the test.

use std::io::Write as _;
use std::sync::OnceLock;

use sqlx::{Connection, Executor};

/// The server's admin URL (a database the account can connect to).
pub fn admin_url() -> String {
    std::env::var("VERDICT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Whether an unreachable server must fail the tests.
fn required() -> bool {
    std::env::var("VERDICT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A database created for one test, dropped (connections and all) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// `postgres://…/verdict_t_…`: the URL to store in.
    pub url: String,
    name: String,
    admin: String,
}

impl TestDatabase {
    /// Creates a fresh database; `None` (after the skip line, printed once
    /// per process) when no server is reachable and none is required.
    pub async fn create() -> Option<TestDatabase> {
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(err) => {
                if required() {
                    panic!("VERDICT_REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable: {err}");
                }
                static SKIPPED: OnceLock<()> = OnceLock::new();
                SKIPPED.get_or_init(|| {
                    // Straight to stderr: the test harness captures print!.
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests skipped: no server at {admin} ({err}); set \
                         VERDICT_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB (an account that \
                         may create databases) to run them, VERDICT_REQUIRE_POSTGRES=1 to fail instead"
                    );
                });
                return None;
            }
        };
        let name = format!("verdict_t_{}", ulid::Ulid::new().to_string().to_lowercase());
        if let Err(err) = conn
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
        {
            panic!("cannot create the test database {name} at {admin}: {err}");
        }
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Some(TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop cannot await, and may run inside a runtime: a thread of its
        // own with a runtime of its own.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A test database on a server that speaks TLS, with what verifying its
/// certificate takes: the CA file (`VERDICT_TEST_POSTGRES_CA`, default
/// Debian's self-signed `/etc/ssl/certs/ssl-cert-snakeoil.pem`, which
/// PostgreSQL's package serves) and the host name the certificate was
/// issued for (`VERDICT_TEST_POSTGRES_TLS_HOST`, default `localhost`).
#[derive(Debug)]
pub struct TlsDatabase {
    /// The database (its URL names the server as the admin URL does).
    pub db: TestDatabase,
    /// The same database, by the host name in the server's certificate.
    pub url_by_name: String,
    /// The CA file that verifies the server's certificate.
    pub ca: std::path::PathBuf,
}

impl TlsDatabase {
    /// A fresh database on a server that accepts TLS; `None` (after one
    /// line saying why) when there is no server, it refuses TLS or the CA
    /// file is missing — a failure instead under `VERDICT_REQUIRE_POSTGRES=1`.
    pub async fn create() -> Option<TlsDatabase> {
        let db = TestDatabase::create().await?;
        let ca = std::env::var("VERDICT_TEST_POSTGRES_CA")
            .ok()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_string());
        let host = std::env::var("VERDICT_TEST_POSTGRES_TLS_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let probe = format!("{}?sslmode=require", db.url);
        let problem = match sqlx::PgConnection::connect(&probe).await {
            Err(err) => Some(format!("it does not accept TLS ({err})")),
            Ok(conn) => {
                let _ = conn.close().await;
                (!std::path::Path::new(&ca).is_file())
                    .then(|| format!("the CA file {ca} does not exist"))
            }
        };
        if let Some(problem) = problem {
            if required() {
                panic!(
                    "VERDICT_REQUIRE_POSTGRES=1 but the PostgreSQL TLS tests cannot run: {problem}"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL TLS tests skipped: {problem}; turn on ssl in postgresql.conf and set \
                 VERDICT_TEST_POSTGRES_CA (CA file) and VERDICT_TEST_POSTGRES_TLS_HOST (the \
                 certificate's host name) to run them"
            );
            return None;
        }
        // postgres://user@HOST:port/db → the same with the certificate's name.
        let url_by_name = match db.url.split_once("://") {
            Some((scheme, rest)) => {
                let (auth, after) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
                let tail = after.find([':', '/']).map_or("", |i| &after[i..]);
                let at = if auth.is_empty() { "" } else { "@" };
                format!("{scheme}://{auth}{at}{host}{tail}")
            }
            None => db.url.clone(),
        };
        Some(TlsDatabase {
            db,
            url_by_name,
            ca: ca.into(),
        })
    }
}

/// `service.postgres` defaults for the database at `url`, as instance
/// `instance`.
pub fn spec(url: &str, instance: &str) -> crate::config::PostgresSpec {
    crate::config::PostgresSpec {
        url: url.to_string(),
        pool_size: crate::config::DEFAULT_PG_POOL_SIZE,
        statement_timeout: crate::config::DEFAULT_PG_STATEMENT_TIMEOUT,
        instance: instance.to_string(),
        grace: crate::config::DEFAULT_PG_GRACE,
        tls: crate::config::PostgresTls::default(),
    }
}
