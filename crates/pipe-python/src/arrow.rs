//! Arrow record batches in and out through the Arrow C data interface's
//! PyCapsules (`__arrow_c_array__`). The text column is read in place from
//! the producer's buffers, not copied into Python strings.
//!
//! The import is our own, not polars-arrow's: polars-arrow's importer trusts
//! what it is given (offsets, UTF-8, buffer counts, metadata), and a batch
//! whose string column holds bytes that are not UTF-8 crashed the
//! interpreter. Here everything the C data interface lets a consumer check is
//! checked before a Rust reference is made from a foreign pointer: counts,
//! lengths and offsets are in range, pointers are non-null, offsets grow,
//! views point inside their buffers, and every value is valid UTF-8. What
//! cannot be checked (that a buffer really is as long as the lengths say) is
//! the producer's side of the specification. Only the schema, the struct
//! array's header and the text column are read; the other columns are left
//! untouched and released with the batch.
//!
//! The scored batch is exported with polars-arrow, from arrays we built.

use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;

use polars_arrow::array::{Array, PrimitiveArray, StructArray, Utf8Array};
use polars_arrow::datatypes::{ArrowDataType, Field};
use polars_arrow::ffi;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const SCHEMA_NAME: &str = "arrow_schema";
const ARRAY_NAME: &str = "arrow_array";

/// The C data interface's `ArrowSchema`, as the specification lays it out.
#[repr(C)]
struct RawSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut RawSchema,
    dictionary: *mut RawSchema,
    release: Option<unsafe extern "C" fn(*mut RawSchema)>,
    private_data: *mut c_void,
}

/// The C data interface's `ArrowArray`, as the specification lays it out.
#[repr(C)]
struct RawArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut RawArray,
    dictionary: *mut RawArray,
    release: Option<unsafe extern "C" fn(*mut RawArray)>,
    private_data: *mut c_void,
}

impl RawArray {
    /// A released array: what a consumer leaves in the capsule after moving
    /// the array out, so that the capsule's destructor does nothing.
    fn released() -> RawArray {
        RawArray {
            length: 0,
            null_count: 0,
            offset: 0,
            n_buffers: 0,
            n_children: 0,
            buffers: std::ptr::null_mut(),
            children: std::ptr::null_mut(),
            dictionary: std::ptr::null_mut(),
            release: None,
            private_data: std::ptr::null_mut(),
        }
    }
}

/// The producer's array, moved out of its capsule; released when dropped.
/// Drop it with the GIL held: a producer's release callback may need it
/// (pyarrow's buffers that wrap Python objects do).
struct OwnedArray(RawArray);

impl Drop for OwnedArray {
    fn drop(&mut self) {
        if let Some(release) = self.0.release {
            // SAFETY: the array was moved out of a live capsule (its release
            // was non-null, checked in `take_array`), the specification lets a
            // consumer move the struct, and it is released exactly once: here.
            unsafe { release(&mut self.0) }
        }
    }
}

// SAFETY: the array's buffers are immutable while we own it, and its release
// callback may be called from any thread (the C data interface's rule).
unsafe impl Send for OwnedArray {}
// SAFETY: shared access only reads the buffers.
unsafe impl Sync for OwnedArray {}

/// How a text column stores its strings.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TextLayout {
    /// `u`: i32 offsets into one values buffer.
    Utf8,
    /// `U`: i64 offsets.
    LargeUtf8,
    /// `vu`: 16-byte views, inline or into variadic buffers.
    Utf8View,
}

/// A column of the batch as its schema describes it.
struct Column {
    name: String,
    /// The Arrow format string (`u`, `l`, `+s`, ...).
    format: String,
    dictionary: bool,
}

impl Column {
    fn text_layout(&self) -> Option<TextLayout> {
        match (self.format.as_str(), self.dictionary) {
            ("u", false) => Some(TextLayout::Utf8),
            ("U", false) => Some(TextLayout::LargeUtf8),
            ("vu", false) => Some(TextLayout::Utf8View),
            _ => None,
        }
    }

    /// The column's type in words, for "holds …, not text".
    fn type_name(&self) -> String {
        let name = match self.format.as_str() {
            "n" => "Null",
            "b" => "Boolean",
            "c" => "Int8",
            "C" => "UInt8",
            "s" => "Int16",
            "S" => "UInt16",
            "i" => "Int32",
            "I" => "UInt32",
            "l" => "Int64",
            "L" => "UInt64",
            "e" => "Float16",
            "f" => "Float32",
            "g" => "Float64",
            "z" => "Binary",
            "Z" => "LargeBinary",
            "vz" => "BinaryView",
            f if f.starts_with("+l") || f.starts_with("+L") || f.starts_with("+vl") => "List",
            "+s" => "Struct",
            f if f.starts_with('t') => "a date or time",
            other => return format!("Arrow format `{other}`"),
        };
        if self.dictionary {
            format!("Dictionary of {name}")
        } else {
            name.to_string()
        }
    }
}

/// A record batch taken from capsules: its columns' names and types and the
/// producer's struct array, whose header has been checked.
pub struct Batch {
    columns: Vec<Column>,
    array: OwnedArray,
    /// The struct array's rows, and its offset into its children.
    rows: usize,
    offset: usize,
}

/// A problem with what the producer handed over, as a ValueError.
fn invalid(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

fn capsule_pointer(capsule: &Bound<'_, PyCapsule>, expected: &str) -> PyResult<*mut c_void> {
    let name = capsule.name()?.map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() != Some(expected) {
        return Err(invalid(format!(
            "expected an `{expected}` capsule, got {name:?}"
        )));
    }
    let pointer = capsule.pointer();
    if pointer.is_null() {
        return Err(invalid(format!(
            "the `{expected}` capsule holds a null pointer"
        )));
    }
    Ok(pointer)
}

/// A non-negative C data interface count or length as usize.
fn count(value: i64, what: &str) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("the Arrow array's {what} is {value}"))
}

/// Takes the batch out of `array` (the capsule is left released, as the
/// PyCapsule protocol asks of a consumer) and reads its columns from `schema`.
pub fn import_batch(
    schema: &Bound<'_, PyCapsule>,
    array: &Bound<'_, PyCapsule>,
) -> PyResult<Batch> {
    let schema_ptr = capsule_pointer(schema, SCHEMA_NAME)? as *const RawSchema;
    let array_ptr = capsule_pointer(array, ARRAY_NAME)? as *mut RawArray;
    // SAFETY: a non-null (checked) `arrow_schema` capsule points to an
    // ArrowSchema, which RawSchema mirrors, owned by the capsule; we hold a
    // reference to the capsule for the whole call and only read it.
    let columns = unsafe { read_schema(&*schema_ptr) }.map_err(invalid)?;
    // SAFETY: a non-null (checked) `arrow_array` capsule points to an
    // ArrowArray, which RawArray mirrors.
    let array = unsafe { take_array(array_ptr) }.map_err(invalid)?;
    let header = &array.0;
    if header.n_children != columns.len() as i64 {
        return Err(invalid(format!(
            "the schema has {} columns but the Arrow array {}",
            columns.len(),
            header.n_children
        )));
    }
    if header.n_buffers != 1 {
        return Err(invalid(format!(
            "a record batch (a struct array) has 1 buffer, this one {}",
            header.n_buffers
        )));
    }
    if header.buffers.is_null() || (header.n_children > 0 && header.children.is_null()) {
        return Err(invalid(
            "the Arrow array's buffers or children are a null pointer",
        ));
    }
    let rows = count(header.length, "length").map_err(invalid)?;
    let offset = count(header.offset, "offset").map_err(invalid)?;
    offset
        .checked_add(rows)
        .ok_or_else(|| invalid("the Arrow array's offset + length overflows"))?;
    Ok(Batch {
        columns,
        array,
        rows,
        offset,
    })
}

/// The columns of a record batch's schema: a struct (`+s`) whose children
/// are the columns.
///
/// # Safety
/// `schema` must be a C data interface ArrowSchema that stays alive and
/// unchanged while this runs (its pointers are the producer's to get right:
/// strings NUL-terminated, `children` holding `n_children` pointers).
unsafe fn read_schema(schema: &RawSchema) -> Result<Vec<Column>, String> {
    if schema.release.is_none() {
        return Err("the Arrow schema was already released".into());
    }
    // SAFETY: the caller's contract, passed on.
    let top = unsafe { column(schema) }?;
    if top.format != "+s" {
        return Err(format!(
            "expected a record batch (a struct array), got {}",
            top.type_name()
        ));
    }
    let n = usize::try_from(schema.n_children)
        .map_err(|_| format!("the Arrow schema has {} children", schema.n_children))?;
    if n > 0 && schema.children.is_null() {
        return Err("the Arrow schema's children are a null pointer".into());
    }
    (0..n)
        .map(|i| {
            // SAFETY: `children` is non-null (checked) and, by the
            // specification, holds `n_children` pointers; i < n_children.
            let child = unsafe { *schema.children.add(i) };
            if child.is_null() {
                return Err(format!("the Arrow schema's column {i} is a null pointer"));
            }
            // SAFETY: a non-null child schema, alive as long as its parent.
            unsafe { column(&*child) }
        })
        .collect()
}

/// One schema node's name and type.
///
/// # Safety
/// As [`read_schema`]: `format` and `name`, when non-null, are NUL-terminated.
unsafe fn column(schema: &RawSchema) -> Result<Column, String> {
    if schema.format.is_null() {
        return Err("an Arrow schema's format is a null pointer".into());
    }
    // SAFETY: non-null (checked) and NUL-terminated (the caller's contract).
    let format = unsafe { CStr::from_ptr(schema.format) }
        .to_string_lossy()
        .into_owned();
    let name = if schema.name.is_null() {
        String::new()
    } else {
        // SAFETY: as for `format`. A name that is not UTF-8 is shown lossily.
        unsafe { CStr::from_ptr(schema.name) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(Column {
        name,
        format,
        dictionary: !schema.dictionary.is_null(),
    })
}

/// Moves the ArrowArray out of a capsule's pointer, leaving a released one.
///
/// # Safety
/// `pointer` must point to a C data interface ArrowArray (an `arrow_array`
/// capsule's pointer), valid for reads and writes.
unsafe fn take_array(pointer: *mut RawArray) -> Result<OwnedArray, String> {
    // SAFETY: the caller's contract; only `release` is read here.
    if unsafe { (*pointer).release }.is_none() {
        return Err("the Arrow array was already consumed (its release callback is null)".into());
    }
    // SAFETY: a live array (release set, checked above). The specification
    // lets a consumer move it by copying the struct and marking the source
    // released, which is what `replace` does: the capsule's destructor then
    // sees a null release and does not release it a second time.
    Ok(OwnedArray(unsafe {
        std::ptr::replace(pointer, RawArray::released())
    }))
}

/// `len` values of `T` in a foreign buffer, read without assuming alignment
/// (the specification only recommends aligned buffers).
struct Values<'a, T> {
    ptr: *const T,
    len: usize,
    _buffer: PhantomData<(&'a (), *const T)>,
}

impl<'a, T: Copy> Values<'a, T> {
    /// # Safety
    /// `ptr` must be valid for reads of `len` values of `T` for `'a`.
    unsafe fn new(ptr: *const c_void, len: usize) -> Values<'a, T> {
        Values {
            ptr: ptr.cast(),
            len,
            _buffer: PhantomData,
        }
    }

    fn get(&self, i: usize) -> T {
        assert!(i < self.len, "index {i} past a buffer of {}", self.len);
        // SAFETY: i < len (asserted), and `new`'s contract makes the first
        // `len` values readable; `read_unaligned` needs no alignment.
        unsafe { self.ptr.add(i).read_unaligned() }
    }
}

/// `len` bytes of a foreign buffer as a slice.
///
/// # Safety
/// `ptr` must be non-null and valid for reads of `len` bytes for `'a`,
/// unchanged meanwhile.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Result<&'a [u8], String> {
    if len > isize::MAX as usize {
        return Err(format!("a buffer of {len} bytes is larger than memory"));
    }
    // SAFETY: the caller's contract; len ≤ isize::MAX (checked); u8 needs no alignment.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// A validity bitmap over physical indices `0..len`, or none (all valid).
struct Validity<'a>(Option<&'a [u8]>);

impl Validity<'_> {
    fn is_valid(&self, index: usize) -> bool {
        self.0
            .is_none_or(|bits| bits[index / 8] & (1 << (index % 8)) != 0)
    }
}

/// The validity bitmap of `array` covering physical indices `0..len`.
///
/// # Safety
/// `array.buffers` must be non-null with at least one pointer, and a
/// non-null first buffer must hold at least `len` bits (the producer's side
/// of the specification, for `len` ≤ offset + length).
unsafe fn validity<'a>(
    array: &'a RawArray,
    len: usize,
    what: &str,
) -> Result<Validity<'a>, String> {
    // SAFETY: the caller's contract: `buffers` holds at least one pointer.
    let bitmap = unsafe { *array.buffers };
    if bitmap.is_null() {
        if array.null_count > 0 {
            return Err(format!(
                "{what} claims {} nulls but has no validity bitmap",
                array.null_count
            ));
        }
        return Ok(Validity(None));
    }
    // SAFETY: non-null (checked), and `len` bits fit in `len.div_ceil(8)` bytes.
    Ok(Validity(Some(unsafe { bytes(bitmap, len.div_ceil(8)) }?)))
}

/// Buffer `i` of `array`.
///
/// # Safety
/// `array.buffers` must be non-null and hold `n_buffers` pointers, i < n_buffers.
unsafe fn buffer(array: &RawArray, i: usize) -> *const c_void {
    // SAFETY: the caller's contract.
    unsafe { *array.buffers.add(i) }
}

/// The text column's values, borrowed from the Arrow buffers, after every
/// check the C data interface allows. `first_row` is the batch's first row
/// in the caller's table: errors name rows as the caller counts them.
pub fn texts<'a>(batch: &'a Batch, column: &str, first_row: usize) -> Result<Vec<&'a str>, String> {
    let index = batch
        .columns
        .iter()
        .position(|c| c.name == column)
        .ok_or_else(|| {
            format!(
                "the batch has no column `{column}` (its columns: {})",
                batch
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let described = &batch.columns[index];
    let layout = described.text_layout().ok_or_else(|| {
        format!(
            "column `{column}` holds {}, not text",
            described.type_name()
        )
    })?;
    if batch.rows == 0 {
        return Ok(Vec::new());
    }
    let header = &batch.array.0;
    // SAFETY: `import_batch` checked `buffers` non-null and n_buffers == 1,
    // and the struct's bitmap covers offset + rows bits (the producer's side).
    let rows_valid = unsafe { validity(header, batch.offset + batch.rows, "the record batch") }?;
    // SAFETY: `children` is non-null and holds n_children == columns.len()
    // pointers (checked in `import_batch`); index < columns.len().
    let child = unsafe { *header.children.add(index) };
    if child.is_null() {
        return Err(format!(
            "column `{column}`: its Arrow array is a null pointer"
        ));
    }
    // SAFETY: a non-null child array, owned by (and alive as long as) the batch.
    let child = unsafe { &*child };
    let reader = TextReader::new(child, layout, batch.offset, batch.rows, column)?;
    (0..batch.rows)
        .map(|row| {
            let at = || format!("row {}: column `{column}`", first_row + row);
            if !rows_valid.is_valid(batch.offset + row)
                || !reader.validity.is_valid(reader.first + row)
            {
                return Err(format!("{} is null", at()));
            }
            let value = reader.value(row).map_err(|e| format!("{}: {e}", at()))?;
            std::str::from_utf8(value).map_err(|e| {
                format!(
                    "{} is not valid UTF-8 (byte {} of its {} bytes)",
                    at(),
                    e.valid_up_to(),
                    value.len()
                )
            })
        })
        .collect()
}

/// Reads one text column's rows `first..first + rows` (physical indices,
/// the child's offset and the batch's included) once its buffers are checked.
struct TextReader<'a> {
    first: usize,
    validity: Validity<'a>,
    strings: Strings<'a>,
}

enum Strings<'a> {
    /// Offsets `first..=first + rows`, checked non-negative and growing, and
    /// the values bytes from the first offset to the last.
    Offsets {
        offsets: Vec<usize>,
        values: &'a [u8],
    },
    /// The views of rows `first..first + rows` and the variadic buffers.
    Views {
        views: &'a [u8],
        buffers: Vec<&'a [u8]>,
    },
}

const VIEW_BYTES: usize = 16;
const INLINE_BYTES: usize = 12;

impl<'a> TextReader<'a> {
    fn new(
        child: &'a RawArray,
        layout: TextLayout,
        batch_offset: usize,
        rows: usize,
        column: &str,
    ) -> Result<TextReader<'a>, String> {
        let problem = |what: String| format!("column `{column}`: {what}");
        let length = count(child.length, "length").map_err(problem)?;
        let offset = count(child.offset, "offset").map_err(problem)?;
        let n_buffers = count(child.n_buffers, "buffer count").map_err(problem)?;
        // The batch's offset applies to its columns, on top of their own.
        let needed = batch_offset
            .checked_add(rows)
            .ok_or_else(|| problem("offset + length overflows".into()))?;
        if length < needed {
            return Err(problem(format!(
                "its Arrow array has {length} rows, the batch needs {needed}"
            )));
        }
        let first = offset
            .checked_add(batch_offset)
            .ok_or_else(|| problem("offset overflows".into()))?;
        let end = first
            .checked_add(rows)
            .ok_or_else(|| problem("offset + length overflows".into()))?;
        let expected = match layout {
            TextLayout::Utf8 | TextLayout::LargeUtf8 => n_buffers == 3,
            TextLayout::Utf8View => n_buffers >= 2,
        };
        if !expected || child.buffers.is_null() {
            return Err(problem(format!(
                "a {layout:?} array with {n_buffers} buffers (pointer {:?})",
                child.buffers
            )));
        }
        // SAFETY: `buffers` is non-null with n_buffers ≥ 2 pointers (checked);
        // the bitmap covers offset + length ≥ end bits (the producer's side).
        let validity = unsafe { validity(child, end, &format!("column `{column}`")) }?;
        let strings = match layout {
            TextLayout::Utf8 => Self::offsets::<i32>(child, first, end),
            TextLayout::LargeUtf8 => Self::offsets::<i64>(child, first, end),
            TextLayout::Utf8View => Self::views(child, n_buffers, first, end),
        }
        .map_err(problem)?;
        Ok(TextReader {
            first,
            validity,
            strings,
        })
    }

    /// Offsets `first..=end` checked non-negative and growing, and the values they cover.
    fn offsets<O: Copy + TryInto<usize> + std::fmt::Display>(
        child: &'a RawArray,
        first: usize,
        end: usize,
    ) -> Result<Strings<'a>, String> {
        // SAFETY: `new` checked buffers non-null with 3 pointers.
        let (offsets_ptr, values_ptr) = unsafe { (buffer(child, 1), buffer(child, 2)) };
        if offsets_ptr.is_null() {
            return Err("its offsets buffer is a null pointer".into());
        }
        // SAFETY: non-null (checked); a string array of offset + length ≥ end
        // rows has offset + length + 1 ≥ end + 1 offsets (the producer's side).
        let raw: Values<'a, O> = unsafe { Values::new(offsets_ptr, end + 1) };
        let mut offsets = Vec::with_capacity(end - first + 1);
        for i in first..=end {
            let o = raw.get(i);
            let o: usize = o.try_into().map_err(|_| format!("offset {i} is {o}"))?;
            if offsets.last().is_some_and(|&previous| o < previous) {
                return Err(format!("offset {i} is {o}, less than the one before it"));
            }
            offsets.push(o);
        }
        let (start, stop) = (offsets[0], offsets[offsets.len() - 1]);
        let values: &[u8] = if stop == start {
            &[]
        } else if values_ptr.is_null() {
            return Err("its values buffer is a null pointer".into());
        } else {
            // SAFETY: non-null (checked); the values buffer holds at least the
            // last offset's bytes (the producer's side), and start ≤ stop.
            unsafe { bytes(values_ptr.cast::<u8>().add(start).cast(), stop - start) }?
        };
        Ok(Strings::Offsets {
            offsets: offsets.iter().map(|o| o - start).collect(),
            values,
        })
    }

    /// The views of rows `first..end` and the variadic buffers, their sizes read
    /// from the last buffer.
    fn views(
        child: &'a RawArray,
        n_buffers: usize,
        first: usize,
        end: usize,
    ) -> Result<Strings<'a>, String> {
        // SAFETY: `new` checked buffers non-null with n_buffers ≥ 2 pointers.
        let views_ptr = unsafe { buffer(child, 1) };
        if views_ptr.is_null() {
            return Err("its views buffer is a null pointer".into());
        }
        let view_bytes = end
            .checked_mul(VIEW_BYTES)
            .ok_or_else(|| format!("{end} views overflow"))?;
        // SAFETY: non-null (checked); an array of offset + length ≥ end rows
        // has that many views of 16 bytes (the producer's side).
        let all_views = unsafe { bytes(views_ptr, view_bytes) }?;
        // Validity, views, the variadic data buffers, then their sizes.
        let n_variadic = n_buffers.saturating_sub(3);
        let mut buffers = Vec::with_capacity(n_variadic);
        if n_variadic > 0 {
            // SAFETY: n_buffers - 1 < n_buffers pointers.
            let sizes_ptr = unsafe { buffer(child, n_buffers - 1) };
            if sizes_ptr.is_null() {
                return Err("its buffer sizes are a null pointer".into());
            }
            // SAFETY: non-null (checked); the last buffer holds one i64 size per variadic buffer.
            let sizes: Values<'a, i64> = unsafe { Values::new(sizes_ptr, n_variadic) };
            for k in 0..n_variadic {
                let size = count(sizes.get(k), &format!("size of data buffer {k}"))?;
                // SAFETY: 2 + k < n_buffers - 1 pointers.
                let data = unsafe { buffer(child, 2 + k) };
                buffers.push(if size == 0 {
                    &[][..]
                } else if data.is_null() {
                    return Err(format!("its data buffer {k} is a null pointer"));
                } else {
                    // SAFETY: non-null (checked), `size` bytes as the sizes buffer says.
                    unsafe { bytes(data, size) }?
                });
            }
        }
        Ok(Strings::Views {
            views: &all_views[first * VIEW_BYTES..],
            buffers,
        })
    }

    /// The bytes of row `row` (relative to the batch), bounds-checked.
    fn value(&self, row: usize) -> Result<&'a [u8], String> {
        match &self.strings {
            Strings::Offsets { offsets, values } => {
                let values: &'a [u8] = values;
                Ok(&values[offsets[row]..offsets[row + 1]])
            }
            Strings::Views { views, buffers } => {
                let views: &'a [u8] = views;
                let view = &views[row * VIEW_BYTES..(row + 1) * VIEW_BYTES];
                let field =
                    |at: usize| i32::from_ne_bytes(view[at..at + 4].try_into().expect("4 bytes"));
                let len = usize::try_from(field(0))
                    .map_err(|_| format!("its view has length {}", field(0)))?;
                if len <= INLINE_BYTES {
                    return Ok(&view[4..4 + len]);
                }
                let (index, offset) = (field(8), field(12));
                let data: &'a [u8] = usize::try_from(index)
                    .ok()
                    .and_then(|i| buffers.get(i).copied())
                    .ok_or_else(|| {
                        format!(
                            "its view points into data buffer {index}, of {}",
                            buffers.len()
                        )
                    })?;
                let start =
                    usize::try_from(offset).map_err(|_| format!("its view has offset {offset}"))?;
                data.get(start..start + len).ok_or_else(|| {
                    format!(
                        "its view's bytes {start}..{} are past data buffer {index} ({} bytes)",
                        start + len,
                        data.len()
                    )
                })
            }
        }
    }
}

/// `Category` and `Probability` (then `Category_2`, `Probability_2`, …) for
/// each row of `batch`, its texts scored `batch_size` at a time.
pub fn score_batch(
    classifier: &pipe::TextClassifier,
    batch: &Batch,
    text_column: &str,
    top_k: usize,
    first_row: usize,
    batch_size: usize,
) -> Result<StructArray, String> {
    let classes = classifier.labels().len();
    if top_k == 0 || top_k > classes {
        return Err(format!(
            "top_k must be between 1 and the model's {classes} classes, not {top_k}"
        ));
    }
    let texts = texts(batch, text_column, first_row)?;
    let names: Vec<String> = (0..classes)
        .map(|c| classifier.label(c).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // Per rank: the class and its probability of each row.
    let mut ranked: Vec<(Vec<usize>, Vec<f32>)> = (0..top_k)
        .map(|_| {
            (
                Vec::with_capacity(texts.len()),
                Vec::with_capacity(texts.len()),
            )
        })
        .collect();
    for chunk in texts.chunks(batch_size) {
        let scores = classifier.scores(chunk).map_err(|e| crate::chain(&e))?;
        let probabilities = pipe::predict::softmax_rows(&scores, classes);
        for (row, p) in scores.chunks(classes).zip(probabilities.chunks(classes)) {
            for (rank, class) in pipe_score::top_classes(row, top_k).into_iter().enumerate() {
                ranked[rank].0.push(class);
                ranked[rank].1.push(p[class]);
            }
        }
    }
    let mut fields = Vec::new();
    let mut columns: Vec<Box<dyn Array>> = Vec::new();
    for (rank, (class_ids, probabilities)) in ranked.into_iter().enumerate() {
        let suffix = if rank == 0 {
            String::new()
        } else {
            format!("_{}", rank + 1)
        };
        fields.push(Field::new(
            format!("Category{suffix}").into(),
            ArrowDataType::Utf8,
            false,
        ));
        columns.push(Box::new(Utf8Array::<i32>::from_iter_values(
            class_ids.iter().map(|&c| names[c].as_str()),
        )));
        fields.push(Field::new(
            format!("Probability{suffix}").into(),
            ArrowDataType::Float32,
            false,
        ));
        columns.push(Box::new(PrimitiveArray::<f32>::from_vec(probabilities)));
    }
    StructArray::try_new(ArrowDataType::Struct(fields), batch.rows, columns, None)
        .map_err(|e| e.to_string())
}

/// The capsules of `batch` for `pyarrow.record_batch` to take.
pub fn export_batch(
    py: Python<'_>,
    batch: StructArray,
) -> PyResult<(Bound<'_, PyCapsule>, Bound<'_, PyCapsule>)> {
    let field = Field::new("".into(), batch.dtype().clone(), false);
    let schema = ffi::export_field_to_c(&field);
    let array = ffi::export_array_to_c(Box::new(batch));
    let schema = PyCapsule::new(py, schema, Some(CString::new(SCHEMA_NAME).expect("no NUL")))?;
    let array = PyCapsule::new(py, array, Some(CString::new(ARRAY_NAME).expect("no NUL")))?;
    Ok((schema, array))
}
