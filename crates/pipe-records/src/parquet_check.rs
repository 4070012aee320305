//! A Parquet file's footer and page headers read and checked before polars
//! decodes it: polars trusts them, and a 14 KB file could make it recurse
//! 20,000 levels (a nested schema), allocate 2^61 bytes (a page with a
//! negative value count) or return empty batches forever (a footer counting
//! 10^15 rows). The thrift structures are read flat, with the format's own
//! reader bounded by the bytes it is given, so none of this can happen here.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
use polars_parquet_format::{
    FieldRepetitionType, FileMetaData, PageHeader, RowGroup, SchemaElement,
};

/// Nesting of the Parquet schema (a list of structs is a few levels).
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// The embedded Arrow schema: about 100 bytes a column.
pub const MAX_ARROW_SCHEMA_BYTES: usize = 1 << 20;
/// A footer larger than this is not a file of records to score.
const MAX_FOOTER_BYTES: u64 = 64 << 20;
/// One page's size, compressed or not.
const MAX_PAGE_BYTES: i64 = 1 << 30;
/// Decoded bytes a thrift reader may allocate per encoded byte.
const DECODED_PER_BYTE: usize = 16;
/// A page header is a few dozen bytes; statistics can make it larger.
const MAX_PAGE_HEADER_BYTES: usize = 64 << 10;
/// Pages whose headers one file may make this check read.
const MAX_PAGES: usize = 1 << 20;

/// Checks the file whose `columns` will be read; `Err` says what makes it
/// unsafe to decode or inconsistent.
pub fn check(path: &Path, columns: &[String]) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let meta = read_footer(&mut file)?;
    check_schema_depth(&meta.schema)?;
    check_arrow_schema_size(&meta)?;
    check_row_counts(&meta)?;
    let mut pages_left = MAX_PAGES;
    for (index, group) in meta.row_groups.iter().enumerate() {
        check_pages(&mut file, index, group, columns, &mut pages_left)?;
    }
    Ok(())
}

fn read_footer(file: &mut File) -> Result<FileMetaData, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < 12 {
        return Err("not a Parquet file: too short".into());
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| e.to_string())?;
    if &tail[4..] != b"PAR1" {
        return Err("not a Parquet file: no `PAR1` at its end".into());
    }
    let footer_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if footer_len > len - 12 || footer_len > MAX_FOOTER_BYTES {
        return Err(format!(
            "not a Parquet file: its footer claims {footer_len} bytes of a {len}-byte file"
        ));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(len - 8 - footer_len))
        .and_then(|_| file.read_exact(&mut footer))
        .map_err(|e| e.to_string())?;
    // The reader's budget is of decoded bytes (8 per list element, plus
    // strings): a bound proportional to the footer's size.
    let mut protocol = TCompactInputProtocol::new(
        footer.as_slice(),
        footer.len().saturating_mul(DECODED_PER_BYTE),
    );
    FileMetaData::read_from_in_protocol(&mut protocol)
        .map_err(|e| format!("not a Parquet file: its footer does not decode: {e}"))
}

/// The schema is a flat list in depth-first order, each group followed by
/// its `num_children` children: its depth is found with a stack of the
/// children still due at each level, without recursion.
fn check_schema_depth(schema: &[SchemaElement]) -> Result<(), String> {
    let mut due: Vec<i64> = Vec::new();
    for element in schema {
        while due.last() == Some(&0) {
            due.pop();
        }
        if let Some(left) = due.last_mut() {
            *left -= 1;
        }
        let children = element.num_children.unwrap_or(0);
        if children < 0 {
            return Err(format!(
                "the schema element `{}` has {children} children",
                element.name
            ));
        }
        if children > 0 {
            due.push(children as i64);
            if due.len() > MAX_SCHEMA_DEPTH {
                return Err(format!(
                    "its schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
                ));
            }
        }
    }
    Ok(())
}

/// polars decodes the Arrow schema a writer may embed (`ARROW:schema`)
/// recursively, trusting it even where it disagrees with the Parquet schema.
/// A real one is a few KB per hundred columns; larger is refused, and the
/// decoding runs on a thread with a large stack (see `score`).
fn check_arrow_schema_size(meta: &FileMetaData) -> Result<(), String> {
    let arrow_schema = meta
        .key_value_metadata
        .iter()
        .flatten()
        .find(|kv| kv.key == "ARROW:schema");
    let bytes = arrow_schema
        .and_then(|kv| kv.value.as_ref())
        .map_or(0, |v| v.len());
    if bytes > MAX_ARROW_SCHEMA_BYTES {
        return Err(format!(
            "its embedded Arrow schema (`ARROW:schema`) is {bytes} bytes, over the {} KiB limit",
            MAX_ARROW_SCHEMA_BYTES >> 10
        ));
    }
    Ok(())
}

/// The file's row count is its row groups' sum, and each flat column chunk
/// holds one value (or null) per row of its group.
fn check_row_counts(meta: &FileMetaData) -> Result<(), String> {
    let mut sum: i64 = 0;
    for (index, group) in meta.row_groups.iter().enumerate() {
        if group.num_rows < 0 {
            return Err(format!("row group {index} counts {} rows", group.num_rows));
        }
        sum = sum
            .checked_add(group.num_rows)
            .ok_or("its row groups count more rows than fit in 64 bits")?;
        for chunk in group.columns.iter().filter_map(|c| c.meta_data.as_ref()) {
            let flat = chunk.path_in_schema.len() == 1
                && !repeated(&meta.schema, &chunk.path_in_schema[0]);
            if flat && chunk.num_values != group.num_rows {
                let column = &chunk.path_in_schema[0];
                return Err(format!(
                    "row group {index} counts {} rows but its column `{column}` holds {} values",
                    group.num_rows, chunk.num_values
                ));
            }
        }
    }
    if meta.num_rows != sum {
        return Err(format!(
            "its footer counts {} rows but its row groups hold {sum}",
            meta.num_rows
        ));
    }
    Ok(())
}

/// Whether the top-level field `name` is repeated (its values are lists).
fn repeated(schema: &[SchemaElement], name: &str) -> bool {
    schema
        .iter()
        .skip(1)
        .any(|e| e.name == name && e.repetition_type == Some(FieldRepetitionType::REPEATED))
}

/// Reads the page headers of the chunks of `columns` in one row group: each
/// size and value count must be possible for the group, before polars
/// allocates by them.
fn check_pages(
    file: &mut File,
    index: usize,
    group: &RowGroup,
    columns: &[String],
    pages_left: &mut usize,
) -> Result<(), String> {
    let file_len = file.metadata().map_err(|e| e.to_string())?.len() as i64;
    for chunk in group.columns.iter().filter_map(|c| c.meta_data.as_ref()) {
        if !chunk
            .path_in_schema
            .first()
            .is_some_and(|top| columns.contains(top))
        {
            continue;
        }
        let column = chunk.path_in_schema.join(".");
        let bad = |message: String| format!("row group {index}, column `{column}`: {message}");
        let start = chunk
            .dictionary_page_offset
            .filter(|&o| o > 0)
            .unwrap_or(chunk.data_page_offset);
        let end = start
            .checked_add(chunk.total_compressed_size)
            .filter(|&end| start >= 4 && chunk.total_compressed_size >= 0 && end <= file_len);
        let end = end.ok_or_else(|| {
            bad(format!(
                "its pages at {start} (+{} bytes) lie outside the file",
                chunk.total_compressed_size
            ))
        })?;
        let mut at = start;
        while at < end {
            *pages_left = pages_left
                .checked_sub(1)
                .ok_or_else(|| format!("more than {MAX_PAGES} pages in the columns read"))?;
            let header = read_page_header(file, at, (end - at) as usize)
                .map_err(|e| bad(format!("the page header at byte {at}: {e}")))?;
            let (size, header_len) = (header.0.compressed_page_size as i64, header.1 as i64);
            if !(0..=MAX_PAGE_BYTES).contains(&size)
                || !(0..=MAX_PAGE_BYTES).contains(&(header.0.uncompressed_page_size as i64))
            {
                return Err(bad(format!(
                    "a page at byte {at} claims {size} bytes ({} uncompressed)",
                    header.0.uncompressed_page_size
                )));
            }
            for count in page_value_counts(&header.0) {
                if count < 0 || (count as i64) > chunk.num_values.max(group.num_rows) {
                    return Err(bad(format!(
                        "a page at byte {at} counts {count} values, for {} in the chunk",
                        chunk.num_values
                    )));
                }
            }
            at += header_len + size;
        }
    }
    Ok(())
}

/// The page header at `offset` and its length in bytes.
fn read_page_header(
    file: &mut File,
    offset: i64,
    most: usize,
) -> Result<(PageHeader, usize), String> {
    let mut bytes = vec![0u8; most.min(MAX_PAGE_HEADER_BYTES)];
    file.seek(SeekFrom::Start(offset as u64))
        .map_err(|e| e.to_string())?;
    let read = file.read(&mut bytes).map_err(|e| e.to_string())?;
    let mut rest = &bytes[..read];
    let header = {
        let mut protocol =
            TCompactInputProtocol::new(&mut rest, read.saturating_mul(DECODED_PER_BYTE));
        PageHeader::read_from_in_protocol(&mut protocol).map_err(|e| e.to_string())?
    };
    Ok((header, read - rest.len()))
}

fn page_value_counts(header: &PageHeader) -> Vec<i32> {
    let mut counts = Vec::new();
    if let Some(h) = &header.data_page_header {
        counts.push(h.num_values);
    }
    if let Some(h) = &header.dictionary_page_header {
        counts.push(h.num_values);
    }
    if let Some(h) = &header.data_page_header_v2 {
        counts.extend([h.num_values, h.num_nulls, h.num_rows]);
    }
    counts
}
