//! The report as one Excel workbook: a summary, the sites, the sessions, the roll calls, the
//! parts of the recording and the event log, each a sheet with the report page's wording. Times are real date cells in the
//! hub's time zone, figures real numbers; every text is a string cell, never a formula, so text
//! a site typed that looks like one (`=cmd|...`) stays text. Each sheet prints landscape, one page wide, with its
//! header row on every page and the meeting's title above.

use rust_xlsxwriter::{Format, FormatBorder, Workbook, Worksheet, XlsxError};
use time::UtcOffset;

use super::event::Millis;
use super::export::{self, Sheet, Table, Value};
use super::report::Report;

/// The workbook's bytes, or why it could not be written.
pub fn workbook(report: &Report, offset: UtcOffset) -> Result<Vec<u8>, XlsxError> {
    let formats = Formats::new();
    let mut workbook = Workbook::new();
    let sheets = [
        export::summary(report),
        export::sheet(report, Table::Sites),
        export::sheet(report, Table::Sessions),
        export::roll_calls(report),
        export::recordings(report),
        export::sheet(report, Table::Events),
    ];
    for sheet in &sheets {
        let worksheet = workbook.add_worksheet();
        write_sheet(
            worksheet,
            sheet,
            &report.summary.title,
            offset,
            &formats,
            MAX_ROWS,
        )?;
    }
    workbook.save_to_buffer()
}

/// Rows in a worksheet.
const MAX_ROWS: u32 = 1_048_576;
/// Excel refuses longer text in a cell.
const MAX_CELL_CHARS: usize = 32_767;
/// Columns grow to fit their text up to this many characters; longer text wraps in print.
const MAX_COLUMN_CHARS: usize = 60;
/// The title in the printed page header is cut to stay within Excel's 255 characters.
const MAX_TITLE_CHARS: usize = 200;
/// Width, in characters, of a `dd/mm/yyyy hh:mm:ss` cell.
const DATE_TIME_CHARS: usize = 19;

struct Formats {
    header: Format,
    title: Format,
    date_time: Format,
    integer: Format,
    minutes: Format,
    percent: Format,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            header: Format::new()
                .set_bold()
                .set_text_wrap()
                .set_background_color("#DDEBF7")
                .set_border_bottom(FormatBorder::Thin),
            title: Format::new().set_bold().set_font_size(14),
            date_time: Format::new().set_num_format("dd/mm/yyyy hh:mm:ss"),
            integer: Format::new().set_num_format("0"),
            minutes: Format::new().set_num_format("0.0"),
            percent: Format::new().set_num_format("0.0%"),
        }
    }
}

fn write_sheet(
    worksheet: &mut Worksheet,
    sheet: &Sheet,
    title: &str,
    offset: UtcOffset,
    formats: &Formats,
    max_rows: u32,
) -> Result<(), XlsxError> {
    worksheet.set_name(sheet.name)?;
    let columns = sheet.headers.len().max(1);
    let mut widths = vec![0usize; columns];

    let mut row: u32 = 0;
    // The lines above the table (the summary's heading) do not set the columns' widths.
    for (i, line) in sheet.intro.iter().enumerate() {
        for (column, value) in line.iter().enumerate() {
            write_value(worksheet, row, column as u16, value, offset, formats)?;
        }
        if let (0, Some(Value::Text(text))) = (i, line.first()) {
            worksheet.write_string_with_format(row, 0, clip(text), &formats.title)?;
        }
        row += 1;
    }

    let header_row = row;
    for (column, header) in sheet.headers.iter().enumerate() {
        worksheet.write_string_with_format(row, column as u16, *header, &formats.header)?;
        grow(&mut widths, column, header.chars().count());
    }
    // A sheet holds `max_rows` rows; a longer table (the quality samples of a very long
    // meeting) ends with a line saying how many rows the CSV has beyond it.
    let room = max_rows.saturating_sub(header_row + 2) as usize;
    for values in sheet.rows.iter().take(room) {
        row += 1;
        for (column, value) in values.iter().enumerate() {
            let width = write_value(worksheet, row, column as u16, value, offset, formats)?;
            grow(&mut widths, column, width);
        }
    }
    if sheet.rows.len() > room {
        row += 1;
        worksheet.write_string(row, 0, rows_left_out(sheet.rows.len() - room))?;
    }
    let last_column = (columns - 1) as u16;
    for (column, width) in widths.iter().enumerate() {
        let chars = (*width).clamp(4, MAX_COLUMN_CHARS);
        worksheet.set_column_width(column as u16, chars as f64 + 2.0)?;
    }

    worksheet.set_freeze_panes(header_row + 1, 0)?;
    worksheet.autofilter(header_row, 0, row, last_column)?;
    worksheet.set_landscape();
    worksheet.set_paper_size(9); // A4
    worksheet.set_print_fit_to_pages(1, 0);
    worksheet.set_repeat_rows(header_row, header_row)?;
    worksheet.set_header(format!("&C&\"-,Bold\"{}", page_header_text(title)));
    worksheet.set_footer(format!("&L{}&RTrang &P / &N", page_header_text(sheet.name)));
    Ok(())
}

/// Writes one typed cell; returns how many characters wide it shows.
fn write_value(
    worksheet: &mut Worksheet,
    row: u32,
    column: u16,
    value: &Value,
    offset: UtcOffset,
    formats: &Formats,
) -> Result<usize, XlsxError> {
    match value {
        Value::Text(text) => {
            let text = clip(text);
            worksheet.write_string(row, column, text)?;
            Ok(text
                .lines()
                .map(|line| line.chars().count())
                .max()
                .unwrap_or(0))
        }
        Value::Integer(n) => {
            worksheet.write_number_with_format(row, column, *n as f64, &formats.integer)?;
            Ok(n.to_string().len())
        }
        Value::Minutes(x) | Value::Megabytes(x) => {
            worksheet.write_number_with_format(row, column, *x, &formats.minutes)?;
            Ok(format!("{x:.1}").len())
        }
        Value::Percent(x) => {
            worksheet.write_number_with_format(row, column, *x / 100.0, &formats.percent)?;
            Ok(format!("{x:.1}%").len())
        }
        Value::Time(at) => match excel_serial(*at, offset) {
            Some(serial) => {
                worksheet.write_number_with_format(row, column, serial, &formats.date_time)?;
                Ok(DATE_TIME_CHARS)
            }
            // Outside the years Excel knows: the time as text rather than a wrong date.
            None => {
                let text = export::local_time(*at, offset);
                worksheet.write_string(row, column, &text)?;
                Ok(text.chars().count())
            }
        },
        Value::Blank => Ok(0),
    }
}

/// The Excel date serial (days since 1899-12-30) of `at` on the wall clock of `offset`, to
/// the whole second as the CSV and the page show it; `None` outside Excel's years 1900–9999.
fn excel_serial(at: Millis, offset: UtcOffset) -> Option<f64> {
    const DAY_SECONDS: i64 = 86_400;
    /// 1970-01-01 as an Excel serial.
    const UNIX_EPOCH_SERIAL: i64 = 25_569;
    /// 1900-03-01 and 10000-01-01 in Unix seconds: Excel's serials are sure between them.
    const FIRST: i64 = -2_203_891_200;
    const END: i64 = 253_402_300_800;
    let seconds = at
        .div_euclid(1000)
        .checked_add(i64::from(offset.whole_seconds()))?;
    if !(FIRST..END).contains(&seconds) {
        return None;
    }
    let days = seconds.div_euclid(DAY_SECONDS) + UNIX_EPOCH_SERIAL;
    let second_of_day = seconds.rem_euclid(DAY_SECONDS);
    Some(days as f64 + second_of_day as f64 / DAY_SECONDS as f64)
}

/// The last line of a table cut to fit a sheet.
fn rows_left_out(count: usize) -> String {
    format!("… và {count} dòng nữa không vừa một trang tính Excel: xem tệp CSV của bảng này.")
}

fn grow(widths: &mut [usize], column: usize, width: usize) {
    if let Some(current) = widths.get_mut(column) {
        *current = (*current).max(width);
    }
}

/// Text cut to what a cell holds.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_CELL_CHARS) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// Text for a printed page header or footer: `&` starts a code there, so it is doubled, and
/// the text is cut to fit Excel's limit.
fn page_header_text(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_TITLE_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut.replace('&', "&&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VIETNAM;

    #[test]
    fn times_are_excel_serials_on_the_vietnam_clock() {
        // 2026-12-01 01:00:00.750 UTC is 08:00:00 in Hà Nội.
        let serial = excel_serial(1_796_086_800_750, VIETNAM).expect("in range");
        // 2026-12-01 is serial 46357.
        assert_eq!(serial, 46_357.0 + 8.0 / 24.0);
        assert_eq!(excel_serial(0, UtcOffset::UTC), Some(25_569.0));
        assert_eq!(excel_serial(i64::MAX, VIETNAM), None);
        assert_eq!(excel_serial(i64::MIN, VIETNAM), None);
    }

    #[test]
    fn a_table_longer_than_a_sheet_ends_with_what_was_left_out() {
        use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
        let sheet = Sheet {
            name: "Sự kiện",
            intro: Vec::new(),
            headers: vec!["STT"],
            rows: (1..=10).map(|n| vec![Value::Integer(n)]).collect(),
        };
        let mut workbook = Workbook::new();
        let worksheet = workbook.add_worksheet();
        write_sheet(worksheet, &sheet, "Họp", VIETNAM, &Formats::new(), 6).expect("written");
        let bytes = workbook.save_to_buffer().expect("saved");
        let mut book: Xlsx<_> =
            open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("read back");
        let range = book.worksheet_range("Sự kiện").expect("the sheet");
        let column: Vec<Data> = range.rows().filter_map(|r| r.first().cloned()).collect();
        assert_eq!(column.len(), 6, "{column:?}");
        assert_eq!(column.get(4), Some(&Data::Float(4.0)));
        assert_eq!(column.get(5), Some(&Data::String(rows_left_out(6))));
    }

    #[test]
    fn a_title_in_the_page_header_is_literal_and_short_enough() {
        assert_eq!(page_header_text("Họp A & B"), "Họp A && B");
        let long = "á".repeat(400);
        assert!(page_header_text(&long).chars().count() <= MAX_TITLE_CHARS + 1);
    }
}
