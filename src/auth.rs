//! Bearer tokens, as both the OTLP receivers and the API's write endpoints
//! check them (`Authorization: Bearer <token>`).

use subtle::ConstantTimeEq as _;

/// `Authorization` scheme and the space after it.
const SCHEME: &[u8] = b"Bearer ";

/// Whether an `Authorization` header value carries `Bearer <token>`; any
/// value passes when no token is configured. The comparison takes time that
/// depends only on the lengths, so a token cannot be guessed byte by byte
/// from response times.
pub fn bearer_ok(token: Option<&str>, header: Option<&[u8]>) -> bool {
    let Some(token) = token else {
        return true;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): some client
    // libraries send `bearer`.
    let presented = header
        .and_then(|h| h.split_at_checked(SCHEME.len()))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
        .map_or(&b""[..], |(_, token)| token);
    bool::from(presented.ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert!(bearer_ok(None, None));
        assert!(bearer_ok(None, Some(b"anything")));
        assert!(bearer_ok(Some("s3cret"), Some(b"Bearer s3cret")));
        assert!(!bearer_ok(Some("s3cret"), Some(b"Bearer s3cre")));
        assert!(!bearer_ok(Some("s3cret"), Some(b"Bearer s3cret ")));
        assert!(!bearer_ok(Some("s3cret"), Some(b"s3cret")));
        assert!(!bearer_ok(Some("s3cret"), None));
        assert!(!bearer_ok(Some(""), Some(b"Bearer x")));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let header = format!("{scheme} s3cret");
            assert!(
                bearer_ok(Some("s3cret"), Some(header.as_bytes())),
                "{header}"
            );
        }
        assert!(!bearer_ok(Some("s3cret"), Some(b"Basic s3cret")));
        assert!(!bearer_ok(Some("s3cret"), Some(b"Bear")));
    }
}
