//! `.npy` files (format 1.0) of a 2-d little-endian float matrix, as `numpy.load` reads them.

use std::io::{self, Write};

use half::f16;
use serde::{Deserialize, Serialize};

/// Element type of the embedding files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingDtype {
    /// `<f2`, clip-retrieval's default: half the size.
    #[default]
    Float16,
    /// `<f4`.
    Float32,
}

/// Writes `values` (`rows × cols`, row-major) as one `.npy` matrix.
///
/// # Errors
///
/// The writer's error.
pub(crate) fn write_npy<W: Write>(mut out: W, values: &[f32], rows: usize, cols: usize, dtype: EmbeddingDtype) -> io::Result<()> {
    debug_assert_eq!(values.len(), rows * cols);
    let descr = match dtype {
        EmbeddingDtype::Float16 => "<f2",
        EmbeddingDtype::Float32 => "<f4",
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    // unwrap-free: the header of a 2-d shape is far below 65,535 bytes.
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    let mut bytes = Vec::with_capacity(values.len() * 4);
    match dtype {
        EmbeddingDtype::Float16 => values.iter().for_each(|v| bytes.extend(f16::from_f32(*v).to_le_bytes())),
        EmbeddingDtype::Float32 => values.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
    }
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let mut buf = Vec::new();
        write_npy(&mut buf, &[1.0, -2.0, 0.5, 3.0, 0.0, 1.5], 2, 3, EmbeddingDtype::Float16).unwrap();
        let header_len = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }"));
        assert_eq!(buf.len(), 10 + header_len + 12);
        assert_eq!(&buf[10 + header_len..10 + header_len + 2], &f16::from_f32(1.0).to_le_bytes());
    }
}
