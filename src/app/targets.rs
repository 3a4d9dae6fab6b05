//! Where the command-line clients (`verdict runs`, `verdict demo`) find a
//! running server: their flags when given, else the pipeline file it runs
//! with (`-c FILE`, or `pipelines/default.yaml` when the working directory
//! has one), else the documented default addresses — so both work from a
//! checkout and from anywhere else. The scheme follows the listener's
//! `tls:`: a listener with TLS is reached over `https://`.

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigErrors, ReceiverKind, ValidatedConfig};

/// The pipeline file read when no `-c` is given.
pub(super) const DEFAULT_PIPELINE: &str = "pipelines/default.yaml";

/// The pipeline file to take addresses from: `given` (which must load),
/// else the default one when it exists. `Ok(None)`: none given and none
/// here, so the default addresses apply.
pub(super) fn pipeline(
    given: Option<&Path>,
) -> Result<Option<ValidatedConfig>, (PathBuf, ConfigErrors)> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None if Path::new(DEFAULT_PIPELINE).exists() => PathBuf::from(DEFAULT_PIPELINE),
        None => return Ok(None),
    };
    config::load_file(&path).map(Some).map_err(|e| (path, e))
}

/// Where `verdict demo` sends without a pipeline file: the OTLP/HTTP
/// receiver's default port on this machine.
pub(super) const DEFAULT_OTLP_HTTP: &str = "127.0.0.1:4318";

/// The API's base URL: `service.api` of `cfg`, or the default address.
pub(super) fn api_url(cfg: Option<&ValidatedConfig>) -> String {
    match cfg {
        Some(cfg) => url(&cfg.service.api_endpoint, cfg.service.api_tls.is_some()),
        None => url(config::DEFAULT_API_ENDPOINT, false),
    }
}

/// The API's base URL when it is known to be the one of the server the
/// demo sends to: `--endpoint` (`given`) is absent or the OTLP/HTTP
/// address the pipeline file (or the default) names. Another endpoint is
/// another server, whose API address the demo cannot know: `None`.
pub(super) fn demo_api_url(
    cfg: Option<&ValidatedConfig>,
    given: Option<&reqwest::Url>,
) -> Option<String> {
    let otlp = cfg
        .and_then(otlp_http_url)
        .unwrap_or_else(|| format!("http://{DEFAULT_OTLP_HTTP}"));
    let same =
        |url: &reqwest::Url| reqwest::Url::parse(&otlp).is_ok_and(|o| o.origin() == url.origin());
    match given {
        Some(url) if !same(url) => None,
        _ => Some(api_url(cfg)),
    }
}

/// The OTLP/HTTP receiver's base URL: the first `otlp` receiver of `cfg`
/// with an HTTP listener, or `None` (the caller's default applies).
pub(super) fn otlp_http_url(cfg: &ValidatedConfig) -> Option<String> {
    cfg.receivers.iter().find_map(|r| match &r.kind {
        ReceiverKind::Otlp(otlp) => otlp
            .http_endpoint
            .as_deref()
            .map(|endpoint| url(endpoint, otlp.http_tls.is_some())),
        ReceiverKind::Probe(_) => None,
    })
}

/// The URL a client on this machine reaches a listen address at: a
/// wildcard address (`0.0.0.0:8686`, `[::]:8686`) is reached on loopback.
fn url(endpoint: &str, tls: bool) -> String {
    let local = match endpoint.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => endpoint.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{local}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback_and_tls_over_https() {
        assert_eq!(url("0.0.0.0:8686", false), "http://127.0.0.1:8686");
        assert_eq!(url("[::]:9000", true), "https://127.0.0.1:9000");
        assert_eq!(url("10.1.2.3:8686", true), "https://10.1.2.3:8686");
        assert_eq!(api_url(None), "http://127.0.0.1:8686");
    }

    #[test]
    fn the_demo_names_an_api_only_for_the_server_it_sends_to() {
        let url = |u: &str| reqwest::Url::parse(u).expect("a URL");
        assert_eq!(
            demo_api_url(None, None).as_deref(),
            Some("http://127.0.0.1:8686")
        );
        assert_eq!(
            demo_api_url(None, Some(&url("http://127.0.0.1:4318/"))).as_deref(),
            Some("http://127.0.0.1:8686")
        );
        assert_eq!(
            demo_api_url(None, Some(&url("http://127.0.0.1:47318"))),
            None
        );
    }

    #[test]
    fn the_listeners_of_a_pipeline_file_give_the_addresses() {
        let dir = std::env::temp_dir().join(format!("verdict-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        std::fs::write(&cert, pair.cert.pem()).expect("cert");
        std::fs::write(&key, pair.signing_key.serialize_pem()).expect("key");
        let tls = format!(
            "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
            cert.display(),
            key.display()
        );
        let yaml = include_str!("../../pipelines/default.yaml")
            .replace(
                "http: { endpoint: 0.0.0.0:4318 }",
                &format!("http: {{ endpoint: \"0.0.0.0:4999\", {tls} }}"),
            )
            .replace(
                "api: { endpoint: 127.0.0.1:8686,",
                &format!("api: {{ endpoint: \"127.0.0.1:8999\", {tls},"),
            );
        let cfg = config::load_str(&yaml, &Default::default()).expect("valid");
        assert_eq!(api_url(Some(&cfg)), "https://127.0.0.1:8999");
        assert_eq!(
            otlp_http_url(&cfg).as_deref(),
            Some("https://127.0.0.1:4999")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
