import StrataData
import Testing

@Suite struct CSVReaderTests {
    private func rows(_ text: String, delimiter: UInt8 = UInt8(ascii: ",")) throws -> (header: [String]?, rows: [[String]], lines: [Int]) {
        let result = try CSVReader.read(text, delimiter: delimiter)
        return (result.header, result.rows.map(\.fields), result.rows.map(\.line))
    }

    @Test func plainRowsWithHeader() throws {
        let read = try rows("a,b,c\n1,2,3\n4,,6\n")
        #expect(read.header == ["a", "b", "c"])
        #expect(read.rows == [["1", "2", "3"], ["4", "", "6"]])
        #expect(read.lines == [2, 3])
    }

    @Test func quotedFieldsHoldDelimitersQuotesAndNewlines() throws {
        let read = try rows("name,note\n\"Smith, J.\",\"said \"\"hi\"\"\"\n\"two\nlines\",\"\"\nlast,\"x\"\n")
        #expect(read.rows == [["Smith, J.", "said \"hi\""], ["two\nlines", ""], ["last", "x"]])
        // A row is named by the line it starts on: the embedded newline moves the next row to line 5.
        #expect(read.lines == [2, 3, 5])
    }

    @Test func lineEndsCRLFAndLFAndNoFinalNewline() throws {
        let crlf = try rows("a,b\r\n1,2\r\n\"x\r\ny\",3\r\n4,5")
        #expect(crlf.rows == [["1", "2"], ["x\r\ny", "3"], ["4", "5"]])
        #expect(crlf.lines == [2, 3, 5])
        let lf = try rows("a,b\n1,2\n4,5")
        #expect(lf.rows == [["1", "2"], ["4", "5"]])
        // Old Mac line ends (a CR alone) end rows too.
        #expect(try rows("a,b\r1,2\r").rows == [["1", "2"]])
    }

    @Test func byteOrderMarkIsDropped() throws {
        let read = try CSVReader.read([0xEF, 0xBB, 0xBF] + Array("age,label\n1,2\n".utf8))
        #expect(read.header == ["age", "label"])
        #expect(read.rows.map(\.fields) == [["1", "2"]])
    }

    @Test func blankLinesAreSkippedAndATrailingDelimiterIsAnEmptyField() throws {
        let read = try rows("\na,b\n\n1,\n\r\n2,3\n\n")
        #expect(read.header == ["a", "b"])
        #expect(read.rows == [["1", ""], ["2", "3"]])
        #expect(read.lines == [4, 6])
        #expect(try rows("a,b\n1,").rows == [["1", ""]])
    }

    @Test func tabSeparated() throws {
        let read = try rows("a\tb c\n1,5\t\"x\ty\"\n", delimiter: UInt8(ascii: "\t"))
        #expect(read.header == ["a", "b c"])
        #expect(read.rows == [["1,5", "x\ty"]])
    }

    /// Chunks may split a row, a quote pair, a CRLF, a UTF-8 character or the byte order mark anywhere.
    @Test func chunkBoundariesDoNotMatter() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("näme,\"no\"\"te\"\r\n\"ä,\r\nb\",2\r\n3,\"\"\r\n".utf8)
        let whole = try CSVReader.read(bytes)
        #expect(whole.rows.count == 2)
        for size in 1...5 {
            var reader = CSVReader()
            var got: [CSVRecord] = []
            var start = 0
            while start < bytes.count {
                got += try reader.read(Array(bytes[start..<min(start + size, bytes.count)]))
                start += size
            }
            got += try reader.finish()
            #expect(reader.header == ["näme", "no\"te"], "chunk size \(size)")
            #expect(got == whole.rows, "chunk size \(size)")
        }
    }

    @Test func aFileThatStartsLikeAByteOrderMarkButIsNotOne() throws {
        // EF BB 80 is U+FEC0, a character: kept.
        let read = try CSVReader.read([0xEF, 0xBB, 0x80] + Array(",b\n1,2\n".utf8))
        #expect(read.header == ["\u{FEC0}", "b"])
        // Input shorter than a byte order mark.
        #expect(try CSVReader.read([0x61]).header == ["a"])
        #expect(try CSVReader.read([UInt8]()).header == nil)
    }

    @Test func raggedRowNamesLineAndCounts() {
        // The quoted newline makes the row on lines 3–4 one row; the short one is on line 5.
        #expect(throws: CSVImportError.raggedRow(line: 5, fields: 2, expected: 3, delimiter: UInt8(ascii: ","))) {
            try CSVReader.read("a,b,c\n1,2,3\n\"x\ny\",2,3\n1,2\n")
        }
        #expect(throws: CSVImportError.raggedRow(line: 2, fields: 4, expected: 3, delimiter: UInt8(ascii: ","))) {
            try CSVReader.read("a,b,c\n1,2,3,4\n")
        }
        let message = CSVImportError.raggedRow(line: 4, fields: 2, expected: 3, delimiter: UInt8(ascii: ",")).description
        #expect(message.hasPrefix("line 4 has 2 fields, the header has 3"))
    }

    @Test func aHeaderSeparatedByAnotherDelimiterIsNamed() throws {
        #expect(throws: CSVImportError.otherDelimiter(header: "a;b;c", found: UInt8(ascii: ";"), given: UInt8(ascii: ","))) {
            try CSVReader.read("a;b;c\n1;2;3\n")
        }
        #expect(throws: CSVImportError.otherDelimiter(header: "a,b", found: UInt8(ascii: ","), given: UInt8(ascii: "\t"))) {
            try CSVReader.read("a,b\n1,2\n", delimiter: UInt8(ascii: "\t"))
        }
        // A quoted name may hold one; a single column without one is fine.
        #expect(try CSVReader.read("\"a;b\"\n1\n").header == ["a;b"])
        #expect(try CSVReader.read("a\n1\n").header == ["a"])
    }

    @Test func malformedQuotingNamesTheLine() {
        #expect(throws: CSVImportError.unterminatedQuote(line: 3)) { try CSVReader.read("a,b\n1,2\n3,\"open\n4,5\n") }
        #expect(throws: CSVImportError.quoteInUnquotedField(line: 2, field: 2)) { try CSVReader.read("a,b\n1,5'10\"\n") }
        #expect(throws: CSVImportError.textAfterClosingQuote(line: 3, field: 1)) { try CSVReader.read("a,b\n1,2\n\"x\"y,2\n") }
    }

    @Test func invalidUTF8NamesTheLine() {
        // "café" in Latin-1: E9 alone is not UTF-8.
        let bytes = Array("a,b\n1,2\n".utf8) + [0x63, 0x61, 0x66, 0xE9] + Array(",3\n".utf8)
        #expect(throws: CSVImportError.notUTF8(line: 3)) { try CSVReader.read(bytes) }
    }

    @Test func aRowLongerThanTheLimitIsRefused() {
        var reader = CSVReader(rowLimit: 16)
        #expect(throws: CSVImportError.rowTooLong(line: 2, limit: 16)) {
            _ = try reader.read(Array("a\n\"0123456789abcdefghij".utf8))
        }
    }
}
