//! Bearer tokens, as both the OTLP receivers and the API's write endpoints
//! check them (`Authorization: Bearer <token>`).

use subtle::ConstantTimeEq as _;

/// Whether an `Authorization` header value carries `Bearer <token>`; any
/// value passes when no token is configured. The comparison takes time that
/// depends only on the lengths, so a token cannot be guessed byte by byte
/// from response times.
pub fn bearer_ok(token: Option<&str>, header: Option<&[u8]>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = header
        .and_then(|h| h.strip_prefix(b"Bearer "))
        .unwrap_or(b"");
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
    }
}
