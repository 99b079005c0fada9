import StrataData
import Testing

@Suite struct CSVTypeInferenceTests {
    private func infer(_ text: String, types: [String: CSVColumnType] = [:]) throws -> [CSVColumnSummary] {
        let (header, rows) = try CSVReader.read(text)
        var inference = try CSVTypeInference(header: header ?? [], types: types.mapValues { ($0, .forced) })
        for row in rows { try inference.add(row) }
        return inference.summaries
    }

    @Test func typesFromEveryRow() throws {
        let columns = try infer("""
            count,ratio,member,name,mixed,flag01,big
            1,0.5,yes,ann,1,0,9223372036854775807
            -2, 3.5 ,NO,bob,yes,1,1
            +30,1e3,t,7,2,1,9223372036854775808
            """)
        #expect(columns.map(\.type) == [.integer, .real, .boolean, .text, .text, .integer, .real])
        #expect(columns[0].minimum == -2 && columns[0].maximum == 30)
        #expect(columns[1].minimum == 0.5 && columns[1].maximum == 1000)
        #expect(columns[2].minimum == nil)
        // Why a column is TEXT: its first value that is neither a number nor a boolean.
        #expect(columns[3].firstText == CSVColumnSummary.Example(line: 2, value: "ann"))
        #expect(columns[4].firstText == nil)
    }

    @Test func realsIncludeExponentsAndSurroundingSpaces() throws {
        let columns = try infer("x\n1e3\n 3.5 \n-.25\n2.\n")
        #expect(columns[0].type == .real)
        #expect(columns[0].minimum == -0.25 && columns[0].maximum == 1000)
        #expect(CSVColumnType.real.cell(" 3.5 ") == .real(3.5))
        #expect(CSVColumnType.real.cell("1e3") == .real(1000))
        // Beyond a double: not a number to store.
        #expect(try infer("x\n1\n1e400\n")[0].type == .text)
        // Not numerals the agent reads: hexadecimal, thousands separators, nan.
        for value in ["0x10", "48,000", "nan", "inf", "1_000"] {
            #expect(try infer("x\n1\n\"\(value)\"\n")[0].type == .text, "\(value)")
        }
    }

    @Test func booleansAreStoredAsZeroOne() throws {
        let columns = try infer("a,b\ntrue,yes\nFalse,0\nT,1\nf,no\n")
        #expect(columns.map(\.type) == [.boolean, .boolean])
        #expect(CSVColumnType.boolean.cell("Yes") == .integer(1))
        #expect(CSVColumnType.boolean.cell(" f ") == .integer(0))
        #expect(CSVColumnType.boolean.cell("maybe") == nil)
    }

    @Test func emptyFieldsAreNullAndDoNotDecideTheType() throws {
        let columns = try infer("a,b,c\n1,,\n,,x\n 2 ,  ,\n")
        #expect(columns.map(\.type) == [.integer, .text, .text])
        #expect(columns[0].nonEmpty == 2 && columns[0].empty == 1)
        #expect(columns[1].nonEmpty == 0 && columns[1].empty == 3)
        #expect(CSVColumnType.integer.cell("  ") == .null)
        #expect(CSVColumnType.text.cell("") == .null)
        #expect(CSVColumnType.text.cell(" kept as is ") == .text(" kept as is "))
    }

    @Test func givenTypesOverrideInferenceAndNameTheValueThatDoesNotFit() throws {
        let columns = try infer("zip,score\n01234,1\n99999,2\n", types: ["zip": .text, "SCORE": .real])
        #expect(columns.map(\.type) == [.text, .real])
        #expect(columns[0].typeSource == .forced)
        #expect(columns[1].minimum == 1)
        #expect(throws: CSVImportError.valueDoesNotFit(line: 3, column: "age", value: "n/a", type: .integer, because: "--type age=integer")) {
            try infer("age\n30\nn/a\n", types: ["age": .integer])
        }
        #expect(throws: CSVImportError.valueDoesNotFit(line: 2, column: "age", value: "3.5", type: .integer, because: "--type age=integer")) {
            try infer("age\n3.5\n", types: ["age": .integer])
        }
        #expect(throws: CSVImportError.unknownTypedColumn(column: "agee", columns: ["age"])) {
            try infer("age\n3\n", types: ["agee": .integer])
        }
        let message = CSVImportError.valueDoesNotFit(line: 3, column: "age", value: "n/a", type: .integer, because: "--type age=integer").description
        #expect(message == "line 3, column 'age': 'n/a' is not an integer (--type age=integer): fix the value, or give the column another type (--type age=text keeps any value)")
    }

    /// The agent takes a TEXT column as a feature when every value is a number: `--type zip=text` keeps the
    /// leading zeros, not the column out of the features.
    @Test func aTextColumnOfNumeralsIsStillReadAsNumbers() throws {
        let columns = try infer("zip,city,empty\n01234,Lyon,\n75011,Paris,\n", types: ["zip": .text])
        #expect(columns[0].type == .text && columns[0].firstText == nil && columns[0].readAsNumbers)
        #expect(columns[1].firstText == CSVColumnSummary.Example(line: 2, value: "Lyon") && !columns[1].readAsNumbers)
        #expect(!columns[2].readAsNumbers)
    }

    @Test func headerNamesAreCheckedAsSQLiteComparesThem() throws {
        #expect(throws: CSVImportError.emptyColumnName(position: 2)) { try infer("a, ,c\n1,2,3\n") }
        #expect(throws: CSVImportError.duplicateColumnNames(["Age"])) { try infer("Age,x,age\n1,2,3\n") }
        #expect(throws: CSVImportError.noHeader(firstRow: ["1", "2.5", "3"])) { try infer("1,2.5,3\n4,5,6\n") }
        // Names are trimmed; a name may hold spaces and quotes.
        #expect(try infer(" first name ,\"say \"\"hi\"\"\"\nx,y\n").map(\.name) == ["first name", "say \"hi\""])
    }

    @Test func declaredTypesOfAnExistingTable() {
        #expect(CSVColumnType(declaredType: "BOOLEAN") == .boolean)
        #expect(CSVColumnType(declaredType: "bigint") == .integer)
        #expect(CSVColumnType(declaredType: "DECIMAL(10,2)") == .real)
        #expect(CSVColumnType(declaredType: "DOUBLE PRECISION") == .real)
        #expect(CSVColumnType(declaredType: "VARCHAR(20)") == .text)
        #expect(CSVColumnType(declaredType: "") == .text)
        #expect(CSVColumnType(declaredType: "DATE") == .text)
    }
}
