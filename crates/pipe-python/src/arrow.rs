//! Arrow record batches in and out through the Arrow C data interface's
//! PyCapsules (`__arrow_c_array__`), with polars-arrow's importer and
//! exporter: the text column is read in place from the producer's buffers,
//! not copied into Python strings.

use std::ffi::CString;

use polars_arrow::array::{Array, PrimitiveArray, StructArray, Utf8Array, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, Field};
use polars_arrow::ffi::{self, ArrowArray, ArrowSchema};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const SCHEMA_NAME: &str = "arrow_schema";
const ARRAY_NAME: &str = "arrow_array";

/// The C data interface's `ArrowArray`, as the specification lays it out:
/// read to check a capsule's array before it is moved into polars-arrow's
/// struct of the same layout.
#[repr(C)]
struct RawArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const std::ffi::c_void,
    children: *mut *mut std::ffi::c_void,
    dictionary: *mut std::ffi::c_void,
    release: Option<unsafe extern "C" fn(*mut std::ffi::c_void)>,
    private_data: *mut std::ffi::c_void,
}

const _: () = assert!(std::mem::size_of::<RawArrowArray>() == std::mem::size_of::<ArrowArray>());

/// A record batch imported from capsules: a struct array and its fields.
pub struct Batch {
    fields: Vec<Field>,
    columns: Vec<Box<dyn Array>>,
    rows: usize,
}

fn capsule_pointer(capsule: &Bound<'_, PyCapsule>, expected: &str) -> PyResult<*mut std::ffi::c_void> {
    let name = capsule.name()?.map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() != Some(expected) {
        return Err(PyValueError::new_err(format!("expected an `{expected}` capsule, got {name:?}")));
    }
    let pointer = capsule.pointer();
    if pointer.is_null() {
        return Err(PyValueError::new_err(format!("the `{expected}` capsule holds a null pointer")));
    }
    Ok(pointer)
}

/// Takes the batch out of `array` (the capsule is left released, as the
/// PyCapsule protocol asks of a consumer) and reads its type from `schema`.
pub fn import_batch(schema: &Bound<'_, PyCapsule>, array: &Bound<'_, PyCapsule>) -> PyResult<Batch> {
    let schema_ptr = capsule_pointer(schema, SCHEMA_NAME)? as *const ArrowSchema;
    let array_ptr = capsule_pointer(array, ARRAY_NAME)?;
    // SAFETY: the capsule is named `arrow_array` and non-null (checked above),
    // so by the PyCapsule protocol it points to a C data interface ArrowArray,
    // whose layout RawArrowArray mirrors; only the `release` field is read.
    let release = unsafe { (*(array_ptr as *const RawArrowArray)).release };
    if release.is_none() {
        return Err(PyValueError::new_err("the Arrow array was already consumed (its release callback is null)"));
    }
    // SAFETY: `schema_ptr` is a non-null `arrow_schema` capsule's pointer, a
    // C data interface ArrowSchema that stays owned by the capsule, which
    // outlives this call; it is only read.
    let field = unsafe { ffi::import_field_from_c(&*schema_ptr) }.map_err(|e| PyValueError::new_err(format!("unreadable Arrow schema: {e}")))?;
    // SAFETY: a live (release set, checked above) ArrowArray; it is moved out
    // and the capsule's copy becomes the empty, released struct, so the
    // capsule's destructor does not release it a second time.
    let moved = unsafe { std::ptr::replace(array_ptr as *mut ArrowArray, ArrowArray::empty()) };
    // SAFETY: `moved` is the producer's array of type `field.dtype`, as the
    // capsule pair's protocol guarantees; polars-arrow validates its buffers.
    let imported =
        unsafe { ffi::import_array_from_c(moved, field.dtype.clone()) }.map_err(|e| PyValueError::new_err(format!("unreadable Arrow array: {e}")))?;
    let ArrowDataType::Struct(fields) = &field.dtype else {
        return Err(PyValueError::new_err(format!("expected a record batch (a struct array), got {:?}", field.dtype)));
    };
    let structs = imported.as_any().downcast_ref::<StructArray>().ok_or_else(|| PyValueError::new_err("the record batch is not a struct array"))?;
    Ok(Batch { fields: fields.clone(), columns: structs.values().to_vec(), rows: structs.len() })
}

/// The text column's values, borrowed from the Arrow buffers; a null names its row.
fn texts<'a>(batch: &'a Batch, column: &str) -> Result<Vec<&'a str>, String> {
    let index = batch.fields.iter().position(|f| f.name.as_str() == column).ok_or_else(|| {
        format!("the batch has no column `{column}` (its columns: {})", batch.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "))
    })?;
    let values = batch.columns[index].as_ref();
    let strings: Vec<Option<&str>> = if let Some(a) = values.as_any().downcast_ref::<Utf8Array<i32>>() {
        a.iter().collect()
    } else if let Some(a) = values.as_any().downcast_ref::<Utf8Array<i64>>() {
        a.iter().collect()
    } else if let Some(a) = values.as_any().downcast_ref::<Utf8ViewArray>() {
        a.iter().collect()
    } else {
        return Err(format!("column `{column}` holds {:?}, not text", values.dtype()));
    };
    strings.into_iter().enumerate().map(|(row, s)| s.ok_or_else(|| format!("row {row}: column `{column}` is null"))).collect()
}

/// `Category` and `Probability` (then `Category_2`, `Probability_2`, …) for each row.
pub fn score_batch(classifier: &pipe::TextClassifier, batch: &Batch, text_column: &str, top_k: usize) -> Result<StructArray, String> {
    let classes = classifier.labels().len();
    if top_k == 0 || top_k > classes {
        return Err(format!("top_k must be between 1 and the model's {classes} classes, not {top_k}"));
    }
    let texts = texts(batch, text_column)?;
    let scores = classifier.scores(&texts).map_err(|e| e.to_string())?;
    let probabilities = pipe::predict::softmax_rows(&scores, classes);
    let ranked: Vec<Vec<usize>> = scores.chunks(classes).map(|row| pipe_score::top_classes(row, top_k)).collect();
    let mut fields = Vec::new();
    let mut columns: Vec<Box<dyn Array>> = Vec::new();
    for rank in 0..top_k {
        let suffix = if rank == 0 { String::new() } else { format!("_{}", rank + 1) };
        let labels: Vec<String> = ranked.iter().map(|r| classifier.label(r[rank]).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        let p: Vec<f32> = ranked.iter().enumerate().map(|(row, r)| probabilities[row * classes + r[rank]]).collect();
        fields.push(Field::new(format!("Category{suffix}").into(), ArrowDataType::Utf8, false));
        columns.push(Box::new(Utf8Array::<i32>::from_slice(&labels)));
        fields.push(Field::new(format!("Probability{suffix}").into(), ArrowDataType::Float32, false));
        columns.push(Box::new(PrimitiveArray::<f32>::from_vec(p)));
    }
    StructArray::try_new(ArrowDataType::Struct(fields), batch.rows, columns, None).map_err(|e| e.to_string())
}

/// The capsules of `batch` for `pyarrow.record_batch` to take.
pub fn export_batch(py: Python<'_>, batch: StructArray) -> PyResult<(Bound<'_, PyCapsule>, Bound<'_, PyCapsule>)> {
    let field = Field::new("".into(), batch.dtype().clone(), false);
    let schema = ffi::export_field_to_c(&field);
    let array = ffi::export_array_to_c(Box::new(batch));
    let schema = PyCapsule::new(py, schema, Some(CString::new(SCHEMA_NAME).expect("no NUL")))?;
    let array = PyCapsule::new(py, array, Some(CString::new(ARRAY_NAME).expect("no NUL")))?;
    Ok((schema, array))
}
