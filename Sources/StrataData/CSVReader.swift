/// One row of a CSV file: its fields, and the line it starts on (counted from 1; the header is line 1).
public struct CSVRecord: Hashable, Sendable {
    public var fields: [String]
    public var line: Int

    public init(fields: [String], line: Int) {
        self.fields = fields
        self.line = line
    }
}

/// Reads CSV (RFC 4180) fed a chunk of bytes at a time, so that a file of any size streams through it.
///
/// Fields are separated by `delimiter`; a field that starts with a double quote runs to the next single
/// quote, and holds delimiters, newlines and doubled quotes (`""` → `"`). Rows end at LF, CRLF or CR; a
/// UTF-8 byte order mark at the start is dropped; blank lines are skipped. The first row is the header, and
/// every later row must have as many fields. Holds at most one row in memory (and refuses a row longer than
/// `rowLimit` bytes: a binary file, or a quote never closed, would otherwise be buffered whole).
public struct CSVReader: Sendable {
    public static let defaultRowLimit = 64 << 20

    public let delimiter: UInt8
    public let rowLimit: Int
    /// The first row, once read.
    public private(set) var header: [String]?

    private enum State {
        case fieldStart, unquoted, quoted
        /// A quote inside a quoted field: the field's end, or the first of a doubled quote.
        case quoteInQuoted
    }

    private var state = State.fieldStart
    private var field: [UInt8] = []
    private var fields: [String] = []
    private var rowBytes = 0
    private var line = 1
    private var rowLine = 1
    private var quoteLine = 1
    /// The last byte was a CR that ended a line: an LF right after it belongs to the same line end.
    private var afterCR = false
    /// How much of a byte order mark the file started with (until `started`).
    private var bomBytes = 0
    private var started = false
    /// The header's first field was quoted (a quoted name may hold any character).
    private var headerQuoted = false

    private static let quote = UInt8(ascii: "\"")
    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// `delimiter`: one byte, neither a quote nor a line end (`,`, `;`, a tab, …).
    public init(delimiter: UInt8 = UInt8(ascii: ","), rowLimit: Int = CSVReader.defaultRowLimit) {
        self.delimiter = delimiter
        self.rowLimit = rowLimit
    }

    /// Reads the next bytes of the file and returns the rows they complete (the header is kept in `header`,
    /// not returned).
    public mutating func read(_ chunk: [UInt8]) throws(CSVImportError) -> [CSVRecord] {
        var rows: [CSVRecord] = []
        var start = 0
        if !started {
            // The byte order mark may be split across chunks: match it a byte at a time.
            while start < chunk.count, !started {
                if chunk[start] == Self.bom[bomBytes] {
                    bomBytes += 1
                    start += 1
                    if bomBytes == Self.bom.count { started = true }
                } else {
                    started = true
                    let partial = Array(Self.bom.prefix(bomBytes))
                    try consume(partial, from: 0, into: &rows)
                }
            }
        }
        try consume(chunk, from: start, into: &rows)
        return rows
    }

    /// Ends the input: returns the last row if the file does not end with a line end.
    public mutating func finish() throws(CSVImportError) -> [CSVRecord] {
        var rows: [CSVRecord] = []
        if !started {
            started = true
            try consume(Array(Self.bom.prefix(bomBytes)), from: 0, into: &rows)
        }
        switch state {
        case .quoted:
            throw .unterminatedQuote(line: quoteLine)
        case .unquoted, .quoteInQuoted:
            try endRow(into: &rows)
        case .fieldStart:
            // "a,b," at the end of the file: a last, empty field.
            if !fields.isEmpty { try endRow(into: &rows) }
        }
        return rows
    }

    /// The header and rows of a whole input (tests, small inputs).
    public static func read(_ bytes: [UInt8], delimiter: UInt8 = UInt8(ascii: ",")) throws(CSVImportError) -> (header: [String]?, rows: [CSVRecord]) {
        var reader = CSVReader(delimiter: delimiter)
        let rows = try reader.read(bytes) + reader.finish()
        return (reader.header, rows)
    }

    public static func read(_ text: String, delimiter: UInt8 = UInt8(ascii: ",")) throws(CSVImportError) -> (header: [String]?, rows: [CSVRecord]) {
        try read(Array(text.utf8), delimiter: delimiter)
    }

    private mutating func consume(_ bytes: [UInt8], from start: Int, into rows: inout [CSVRecord]) throws(CSVImportError) {
        var i = start
        let n = bytes.count
        while i < n {
            let byte = bytes[i]
            if afterCR {
                afterCR = false
                if byte == Self.lf {
                    if state == .quoted { try append(byte) }
                    i += 1
                    continue
                }
            }
            switch state {
            case .fieldStart:
                if byte == Self.quote {
                    state = .quoted
                    quoteLine = line
                    if header == nil, fields.isEmpty { headerQuoted = true }
                    i += 1
                } else if byte == delimiter {
                    try endField()
                    i += 1
                } else if byte == Self.cr || byte == Self.lf {
                    // A line end right after a delimiter ends a last, empty field; on its own, a blank line.
                    if !fields.isEmpty { try endRow(into: &rows) }
                    endLine(byte)
                    i += 1
                } else {
                    state = .unquoted
                }
            case .unquoted:
                var j = i
                while j < n {
                    let b = bytes[j]
                    if b == delimiter || b == Self.cr || b == Self.lf || b == Self.quote { break }
                    j += 1
                }
                try append(bytes[i..<j])
                i = j
                guard i < n else { break }
                let b = bytes[i]
                i += 1
                if b == Self.quote { throw .quoteInUnquotedField(line: line, field: fields.count + 1) }
                if b == delimiter {
                    try endField()
                    state = .fieldStart
                } else {
                    try endRow(into: &rows)
                    endLine(b)
                }
            case .quoted:
                var j = i
                while j < n {
                    let b = bytes[j]
                    if b == Self.quote || b == Self.cr || b == Self.lf { break }
                    j += 1
                }
                try append(bytes[i..<j])
                i = j
                guard i < n else { break }
                let b = bytes[i]
                i += 1
                if b == Self.quote {
                    state = .quoteInQuoted
                } else {
                    // A newline inside quotes is data, and still a new line of the file.
                    try append(b)
                    line += 1
                    afterCR = b == Self.cr
                }
            case .quoteInQuoted:
                i += 1
                if byte == Self.quote {
                    try append(byte)
                    state = .quoted
                } else if byte == delimiter {
                    try endField()
                    state = .fieldStart
                } else if byte == Self.cr || byte == Self.lf {
                    try endRow(into: &rows)
                    endLine(byte)
                } else {
                    throw .textAfterClosingQuote(line: line, field: fields.count + 1)
                }
            }
        }
    }

    private mutating func append(_ bytes: ArraySlice<UInt8>) throws(CSVImportError) {
        guard !bytes.isEmpty else { return }
        rowBytes += bytes.count
        guard rowBytes <= rowLimit else { throw .rowTooLong(line: rowLine, limit: rowLimit) }
        field.append(contentsOf: bytes)
    }

    private mutating func append(_ byte: UInt8) throws(CSVImportError) {
        rowBytes += 1
        guard rowBytes <= rowLimit else { throw .rowTooLong(line: rowLine, limit: rowLimit) }
        field.append(byte)
    }

    private mutating func endField() throws(CSVImportError) {
        guard let text = String(validating: field, as: UTF8.self) else { throw .notUTF8(line: rowLine) }
        fields.append(text)
        field.removeAll(keepingCapacity: true)
    }

    private mutating func endRow(into rows: inout [CSVRecord]) throws(CSVImportError) {
        try endField()
        defer {
            fields.removeAll(keepingCapacity: true)
            rowBytes = 0
            state = .fieldStart
        }
        guard let header else {
            // One column whose name holds a common delimiter: the file is likely separated by that one.
            if fields.count == 1, !headerQuoted,
               let other = [",", ";", "\t", "|"].map({ UInt8(ascii: $0) }).first(where: { $0 != delimiter && fields[0].utf8.contains($0) }) {
                throw .otherDelimiter(header: fields[0], found: other, given: delimiter)
            }
            header = fields
            return
        }
        guard fields.count == header.count else {
            throw .raggedRow(line: rowLine, fields: fields.count, expected: header.count, delimiter: delimiter)
        }
        rows.append(CSVRecord(fields: fields, line: rowLine))
    }

    /// After a line end outside quotes: the next row starts on the next line.
    private mutating func endLine(_ byte: UInt8) {
        line += 1
        rowLine = line
        afterCR = byte == Self.cr
        state = .fieldStart
    }
}
