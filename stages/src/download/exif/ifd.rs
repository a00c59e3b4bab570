//! exifread's `ExifHeader`: the IFDs walked with its integer reading (`s2n`), its field
//! values, how it prints them, and its dict of tags.

use std::collections::HashMap;
use std::fmt::Write;

use super::python::{fraction, py_bytes, py_char_repr, py_float, py_list};
use super::tags::{exif_tag, gps_tag, interop_tag, Mapping, SubIfd};
use super::{File, Stop};

/// The work one image's EXIF may cost (IFD entries read, values printed, bytes of output);
/// beyond it the field is `"{}"` (exifread would only be slow; no real EXIF comes close).
const BUDGET: usize = 1 << 20;

/// The IFD tables exifread reads with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Exif,
    Gps,
    Interop,
}

/// A field's values as exifread holds them.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Values {
    /// Integers (`BYTE`, `SHORT`, `LONG`, their signed forms, `IFD`).
    Ints(Vec<i64>),
    /// `RATIONAL`/`SRATIONAL` as numerator and denominator.
    Ratios(Vec<(i64, i64)>),
    /// `FLOAT`/`DOUBLE`, each a 1-tuple in Python.
    Floats(Vec<f64>),
    /// `ASCII` decoded as UTF-8 (up to the first NUL).
    Text(String),
    /// `ASCII` that is not UTF-8, kept as bytes.
    Bytes(Vec<u8>),
}

/// What `values[0]` gives as an IFD offset.
pub(super) enum First {
    /// `IndexError`.
    Missing,
    /// An integer.
    Offset(i64),
    /// A character, fraction or float: `seek` raises `TypeError`.
    NotAnOffset,
}

impl Values {
    pub(super) fn first_offset(&self) -> First {
        let first = match self {
            Self::Ints(v) => v.first().map(|&v| First::Offset(v)),
            Self::Bytes(v) => v.first().map(|&v| First::Offset(i64::from(v))),
            Self::Ratios(v) => v.first().map(|_| First::NotAnOffset),
            Self::Floats(v) => v.first().map(|_| First::NotAnOffset),
            Self::Text(v) => v.chars().next().map(|_| First::NotAnOffset),
        };
        first.unwrap_or(First::Missing)
    }

    fn len(&self) -> usize {
        match self {
            Self::Ints(v) => v.len(),
            Self::Ratios(v) => v.len(),
            Self::Floats(v) => v.len(),
            Self::Text(v) => v.chars().count(),
            Self::Bytes(v) => v.len(),
        }
    }

    /// Python's `str(values)`, or of `values[0:20]` when `first` is 20.
    fn to_python(&self, first: usize) -> String {
        match self {
            Self::Ints(v) => py_list(&v[..first.min(v.len())], |out, n| write!(out, "{n}")),
            Self::Ratios(v) => py_list(&v[..first.min(v.len())], |out, &(n, d)| out.write_str(&fraction(n, d))),
            Self::Floats(v) => py_list(&v[..first.min(v.len())], |out, &x| write!(out, "({},)", py_float(x))),
            Self::Text(v) => v.clone(),
            Self::Bytes(v) => py_bytes(&v[..first.min(v.len())]),
        }
    }

    /// Python's `str(values[0])`.
    fn first_to_python(&self) -> String {
        match self {
            Self::Ints(v) => v.first().map(i64::to_string).unwrap_or_default(),
            Self::Ratios(v) => v.first().map(|&(n, d)| fraction(n, d)).unwrap_or_default(),
            Self::Floats(v) => v.first().map(|&x| format!("({},)", py_float(x))).unwrap_or_default(),
            Self::Text(_) | Self::Bytes(_) => self.to_python(usize::MAX),
        }
    }

    /// `''.join(table.get(v, repr(v)) for v in values)`.
    fn lookup(&self, table: &[(u32, &str)]) -> String {
        let find =
            |n: i64| u32::try_from(n).ok().and_then(|n| table.iter().find(|(k, _)| *k == n)).map(|(_, name)| *name);
        let mut out = String::new();
        match self {
            Self::Ints(v) => {
                v.iter().for_each(|&n| out.push_str(&find(n).map_or_else(|| n.to_string(), str::to_owned)))
            }
            Self::Bytes(v) => {
                v.iter().for_each(|&n| out.push_str(&find(n.into()).map_or_else(|| n.to_string(), str::to_owned)))
            }
            Self::Ratios(v) => {
                for &(n, d) in v {
                    let whole = (d != 0 && n % d == 0).then(|| n / d);
                    out.push_str(&whole.and_then(find).map_or_else(|| fraction(n, d), str::to_owned));
                }
            }
            Self::Floats(v) => v.iter().for_each(|&x| {
                let _ = write!(out, "({},)", py_float(x));
            }),
            Self::Text(v) => v.chars().for_each(|c| out.push_str(&py_char_repr(c))),
        }
        out
    }

    /// exifread's `make_string`.
    fn make_string(&self) -> String {
        let latin1 = |bytes: &mut dyn Iterator<Item = i64>| -> String {
            bytes.filter(|n| (32..256).contains(n)).map(|n| char::from(n as u8)).collect()
        };
        let text = match self {
            Self::Ints(v) => latin1(&mut v.iter().copied()),
            Self::Bytes(v) => latin1(&mut v.iter().map(|&b| i64::from(b))),
            Self::Ratios(_) | Self::Floats(_) | Self::Text(_) => String::new(),
        };
        let text = if !text.is_empty() {
            text
        } else {
            match self {
                Self::Ints(_) | Self::Ratios(_) | Self::Floats(_) => {
                    let joined: String = match self {
                        Self::Ints(v) => v.iter().map(i64::to_string).collect(),
                        Self::Ratios(v) => v.iter().map(|&(n, d)| fraction(n, d)).collect(),
                        Self::Floats(v) => v.iter().map(|&x| format!("({},)", py_float(x))).collect(),
                        _ => String::new(),
                    };
                    if !joined.is_empty() && joined.chars().all(|c| c == '0') {
                        return String::new();
                    }
                    joined
                }
                Self::Text(_) | Self::Bytes(_) => self.to_python(usize::MAX),
            }
        };
        text.trim_matches([' ', '\0']).to_owned()
    }

    /// exifread's `make_string_uc`: `make_string` past a known 8-byte character code.
    fn make_string_uc(&self) -> String {
        let code = |v: Values| matches!(v.make_string().to_uppercase().as_str(), "ASCII" | "UNICODE" | "JIS" | "");
        match self {
            Self::Ints(v) if code(Self::Ints(v.iter().copied().take(8).collect())) => {
                Self::Ints(v.iter().copied().skip(8).collect()).make_string()
            }
            Self::Bytes(v) if code(Self::Bytes(v.iter().copied().take(8).collect())) => {
                Self::Bytes(v.iter().copied().skip(8).collect()).make_string()
            }
            Self::Ratios(v) if code(Self::Ratios(v.iter().copied().take(8).collect())) => {
                Self::Ratios(v.iter().copied().skip(8).collect()).make_string()
            }
            Self::Floats(v) if code(Self::Floats(v.iter().copied().take(8).collect())) => {
                Self::Floats(v.iter().copied().skip(8).collect()).make_string()
            }
            _ => self.make_string(),
        }
    }
}

/// The tags read so far: exifread's `hdr.tags`, a dict whose keys keep their first position.
#[derive(Default)]
struct Tags {
    list: Vec<(String, String, Values)>,
    index: HashMap<String, usize>,
}

impl Tags {
    fn insert(&mut self, key: String, printable: String, values: Values) {
        if let Some(&i) = self.index.get(&key) {
            self.list[i] = (key, printable, values);
        } else {
            self.index.insert(key.clone(), self.list.len());
            self.list.push((key, printable, values));
        }
    }

    fn values(&self, key: &str) -> Option<&Values> {
        self.index.get(key).map(|&i| &self.list[i].2)
    }

    fn into_list(self) -> Vec<(String, String)> {
        self.list.into_iter().map(|(key, printable, _)| (key, printable)).collect()
    }
}

/// exifread's `ExifHeader`.
pub(super) struct Header<'a> {
    file: File<'a>,
    /// Where the TIFF header starts; offsets are relative to it.
    offset: i64,
    little_endian: bool,
    tags: Tags,
    /// Work left (see [`BUDGET`]).
    budget: usize,
}

/// Byte sizes of exifread's field types 1–13 (index 0 is no type).
const TYPE_LENGTHS: [u64; 14] = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4];

impl<'a> Header<'a> {
    pub(super) fn new(file: File<'a>, offset: i64, little_endian: bool) -> Self {
        Self { file, offset, little_endian, tags: Tags::default(), budget: BUDGET }
    }

    /// The values of a tag read so far.
    pub(super) fn values(&self, key: &str) -> Option<&Values> {
        self.tags.values(key)
    }

    /// The tags, in exifread's order, with their printed values.
    pub(super) fn into_tags(self) -> Vec<(String, String)> {
        self.tags.into_list()
    }

    fn spend(&mut self, work: usize) -> Result<(), Stop> {
        self.budget = self.budget.checked_sub(work).ok_or(Stop::OverBudget)?;
        Ok(())
    }

    /// exifread's `s2n`: an integer at `offset`; 0 when fewer than two bytes are left (so every
    /// 1-byte value reads as 0), an exception when the value is cut short.
    fn s2n(&self, offset: i64, length: u64, signed: bool) -> Result<i64, Stop> {
        let buf = self.file.read(self.offset.checked_add(offset).ok_or(Stop::Raised)?, length)?;
        if buf.len() < 2 {
            return Ok(0);
        }
        if buf.len() as u64 != length {
            return Err(Stop::Raised);
        }
        let mut raw = [0u8; 8];
        let n = buf.len();
        if self.little_endian {
            raw[..n].copy_from_slice(buf);
        } else {
            raw[..n].iter_mut().zip(buf.iter().rev()).for_each(|(r, b)| *r = *b);
        }
        let unsigned = u64::from_le_bytes(raw);
        Ok(match (n, signed) {
            (2, true) => i64::from(unsigned as u16 as i16),
            (4, true) => i64::from(unsigned as u32 as i32),
            _ => unsigned as i64,
        })
    }

    /// exifread's `list_ifd`: the chain of IFDs from the first, stopping at a loop.
    pub(super) fn list_ifds(&mut self) -> Result<Vec<i64>, Stop> {
        let mut ifds = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut ifd = self.s2n(4, 4, false)?;
        while ifd != 0 {
            if !seen.insert(ifd) {
                break;
            }
            self.spend(1)?;
            ifds.push(ifd);
            let entries = self.s2n(ifd, 2, false)?;
            let next = self.s2n(ifd + 2 + 12 * entries, 4, false)?;
            ifd = if next == ifd { 0 } else { next };
        }
        Ok(ifds)
    }

    /// exifread's `dump_ifd` with `details=False`.
    pub(super) fn dump_ifd(&mut self, ifd: i64, ifd_name: &str, table: Table) -> Result<(), Stop> {
        let entries = self.s2n(ifd, 2, false)?;
        for i in 0..entries {
            self.spend(1)?;
            let entry = ifd + 2 + 12 * i;
            let tag = self.s2n(entry, 2, false)? as u16;
            // XMP, MakerNote and UserComment are skipped for speed when not detailed.
            if matches!(tag, 0x02bc | 0x927c | 0x9286) {
                continue;
            }
            let (name, mapping) = match table {
                Table::Exif => exif_tag(tag).map_or((None, Mapping::None), |(name, mapping)| (Some(name), mapping)),
                Table::Gps => (gps_tag(tag), Mapping::None),
                Table::Interop => (interop_tag(tag), Mapping::None),
            };
            let name = name.map_or_else(|| format!("Tag 0x{tag:04X}"), str::to_owned);
            self.process_tag(ifd_name, &name, mapping, entry)?;
        }
        Ok(())
    }

    /// exifread's `_process_tag`.
    fn process_tag(&mut self, ifd_name: &str, tag_name: &str, mapping: Mapping, entry: i64) -> Result<(), Stop> {
        let field_type = self.s2n(entry + 2, 2, false)?;
        let Some(&type_length) = usize::try_from(field_type).ok().filter(|&t| t > 0).and_then(|t| TYPE_LENGTHS.get(t))
        else {
            return Ok(());
        };
        let count = self.s2n(entry + 4, 4, false)?;
        let mut offset = entry + 8;
        if count as u64 * type_length > 4 {
            offset = self.s2n(offset, 4, false)?;
        }
        let values = if field_type == 2 {
            self.ascii(offset, count)?
        } else {
            self.numbers(field_type, count, type_length, offset)?
        };
        self.spend(values.len())?;
        let mut printable = if count == 1 && field_type != 2 {
            values.first_to_python()
        } else if count > 50 && values.len() > 20 && !matches!(values, Values::Text(_)) {
            let mut text = values.to_python(20);
            text.pop();
            text + ", ... ]"
        } else {
            values.to_python(usize::MAX)
        };
        match mapping {
            Mapping::None => {}
            Mapping::MakeString => printable = values.make_string(),
            Mapping::MakeStringUc => printable = values.make_string_uc(),
            Mapping::Values(table) => printable = values.lookup(table),
            Mapping::SubIfd(sub) => {
                // `values[0]`: an `IndexError` is caught; a non-integer fails the seek, caught.
                if let First::Offset(ifd) = values.first_offset() {
                    let (name, table) = match sub {
                        SubIfd::Gps => ("GPS", Table::Gps),
                        SubIfd::Interop => ("Interoperability", Table::Interop),
                    };
                    self.dump_ifd(ifd, name, table)?;
                }
            }
        }
        self.spend(printable.len())?;
        self.tags.insert(format!("{ifd_name} {tag_name}"), printable, values);
        Ok(())
    }

    /// exifread's `_process_field2`: `count` bytes up to the first NUL, UTF-8 or kept as bytes.
    fn ascii(&self, offset: i64, count: i64) -> Result<Values, Stop> {
        if count == 0 {
            return Ok(Values::Text(String::new()));
        }
        let raw = self.file.read(self.offset.checked_add(offset).ok_or(Stop::Raised)?, count as u64)?;
        let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
        Ok(match std::str::from_utf8(raw) {
            Ok(text) => Values::Text(text.to_owned()),
            Err(_) => Values::Bytes(raw.to_vec()),
        })
    }

    /// exifread's `_process_field`: up to 999 values (none from 1000 on).
    fn numbers(&self, field_type: i64, count: i64, type_length: u64, mut offset: i64) -> Result<Values, Stop> {
        let count = if count < 1000 { count as usize } else { 0 };
        let signed = matches!(field_type, 6 | 8 | 9 | 10);
        let step = type_length as i64;
        Ok(match field_type {
            5 | 10 => {
                let mut ratios = Vec::with_capacity(count);
                for _ in 0..count {
                    ratios.push((self.s2n(offset, 4, signed)?, self.s2n(offset + 4, 4, signed)?));
                    offset += step;
                }
                Values::Ratios(ratios)
            }
            11 | 12 => {
                let mut floats = Vec::with_capacity(count);
                for _ in 0..count {
                    let raw = self.file.read(self.offset.checked_add(offset).ok_or(Stop::Raised)?, type_length)?;
                    floats.push(match *raw {
                        [a, b, c, d] if field_type == 11 => {
                            let bytes = [a, b, c, d];
                            f64::from(if self.little_endian {
                                f32::from_le_bytes(bytes)
                            } else {
                                f32::from_be_bytes(bytes)
                            })
                        }
                        [a, b, c, d, e, f, g, h] if field_type == 12 => {
                            let bytes = [a, b, c, d, e, f, g, h];
                            if self.little_endian {
                                f64::from_le_bytes(bytes)
                            } else {
                                f64::from_be_bytes(bytes)
                            }
                        }
                        // `struct.unpack` of a short buffer raises.
                        _ => return Err(Stop::Raised),
                    });
                    offset += step;
                }
                Values::Floats(floats)
            }
            _ => {
                let mut ints = Vec::with_capacity(count);
                for _ in 0..count {
                    ints.push(self.s2n(offset, type_length, signed)?);
                    offset += step;
                }
                Values::Ints(ints)
            }
        })
    }
}
