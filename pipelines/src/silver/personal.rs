//! Personal data in silver columns: salted SHA-256 hashes (joinable, not reversible) or masks.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use sha2::{Digest, Sha256};

use crate::spec::Pii;

/// The environment variable holding the hashing salt.
pub(crate) const SALT_VARIABLE: &str = "MEDALLION_PII_SALT";

/// Characters a mask leaves visible at the end.
const VISIBLE: usize = 4;

/// Protects every value of `column` (as text); nulls stay null.
pub(crate) fn protect(column: &ArrayRef, pii: Pii, salt: &[u8]) -> Result<ArrayRef, String> {
    let text = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text.as_string::<i32>();
    let out: StringArray = text
        .iter()
        .map(|v| {
            v.map(|v| match pii {
                Pii::Hash => hash(salt, v),
                Pii::Mask => mask(v),
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn hash(salt: &[u8], value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(value.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mask(value: &str) -> String {
    let n = value.chars().count();
    // A value no longer than the visible part is hidden whole.
    let hidden = if n <= VISIBLE { n } else { n - VISIBLE };
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < hidden { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn hashes_with_the_salt_and_masks_all_but_the_end() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![
            Some("alice@example.com"),
            None,
            Some("abc"),
        ]));
        let hashed = protect(&column, Pii::Hash, b"pepper").unwrap();
        let hashed = hashed.as_string::<i32>();
        // printf 'pepperalice@example.com' | sha256sum
        assert_eq!(
            hashed.value(0),
            "8b8d9adc4875c0dca816e3e17b7ac87b45e40945b731fa02e3b42bf101589e21"
        );
        assert!(hashed.is_null(1));
        let other = protect(&column, Pii::Hash, b"salt").unwrap();
        assert_ne!(other.as_string::<i32>().value(0), hashed.value(0));
        let masked = protect(&column, Pii::Mask, b"").unwrap();
        let masked = masked.as_string::<i32>();
        assert_eq!(masked.value(0), "*************.com");
        // Values no longer than the visible part are hidden whole.
        assert_eq!(masked.value(2), "***");
    }
}
