import StrataData
import Testing

@Suite struct CSVImportReportTests {
    private func infer(_ text: String) throws -> [CSVColumnSummary] {
        let (header, rows) = try CSVReader.read(text)
        var inference = try CSVTypeInference(header: header ?? [])
        for row in rows { try inference.add(row) }
        return inference.summaries
    }

    @Test func reportSuggestsTheAgentCommand() throws {
        var text = "row_id,age,income,member,note,outcome\n"
        for i in 1...12 { text += "\(i),\(20 + i * 7 % 13),\(i % 4 == 0 ? "" : "\(i).5"),\(i % 2 == 0 ? "yes" : "no"),n\(i),\(i % 2)\n" }
        let report = CSVImportReport(file: "in.csv", database: "my data.sqlite", table: "visits", rows: 12,
                                     columns: try infer(text), outcome: .created)
        #expect(report.suggestedLabel == "outcome")
        #expect(report.identifierColumns.map(\.name) == ["row_id"])
        let lines = report.lines
        #expect(lines[0] == "imported 12 rows from in.csv into table 'visits' of my data.sqlite (new table)")
        #expect(lines[1] == "  column   type     values  empty  min  max   note")
        #expect(lines[2].hasPrefix("  row_id   INTEGER      12      0  1    12    a row identifier? its name is an identifier's"))
        #expect(lines[4] == "  income   REAL          9      3  1.5  11.5")
        #expect(lines[6] == "  note     TEXT         12      0             text (line 2: 'n1'): not a feature; class names as a label")
        #expect(lines.contains("next: strata-agent --database 'my data.sqlite' --table visits --label-column outcome --exclude-columns row_id ..."))
        #expect(lines.contains { $0.hasPrefix("  empty values in income: the agent refuses them unless given --null-policy") })
        // No column named like a label: the flag is left for the owner to fill in.
        let unnamed = CSVImportReport(file: "in.csv", database: "d.sqlite", table: "t", rows: 1,
                                      columns: [CSVColumnSummary(name: "a", type: .integer, nonEmpty: 1, empty: 0, minimum: 1, maximum: 1)],
                                      outcome: .dryRun)
        #expect(unnamed.lines.contains("next: strata-agent --database d.sqlite --table t --label-column COLUMN ..."))
        #expect(unnamed.lines[0] == "dry run: 1 row of in.csv would go into table 't' of d.sqlite; nothing was written")
    }

    /// A column of dates imports as TEXT; the report says it is a feature with --date-columns, and the command has it.
    @Test func aColumnOfDatesIsSuggestedForDateColumns() throws {
        var text = "visited,closed,x,label\n"
        for i in 1...5 { text += "2024-01-0\(i),2024-02-0\(i) 12:00,\(i),\(i % 2)\n" }
        text += "2024-01-09,not yet,3,1\n"
        let columns = try infer(text)
        #expect(columns.map(\.holdsDates) == [true, false, false, false])
        let report = CSVImportReport(file: "f.csv", database: "d.sqlite", table: "t", rows: 6, columns: columns, outcome: .created)
        #expect(report.lines.contains { $0.contains("visited") && $0.hasSuffix("dates: a feature with --date-columns (days since 1970-01-01)") }, "\(report.lines)")
        #expect(report.lines.contains { $0.contains("closed") && $0.contains("text (line 2: '2024-02-01 12:00'): not a feature") }, "\(report.lines)")
        #expect(report.lines.contains("next: strata-agent --database d.sqlite --table t --label-column label --date-columns visited ..."), "\(report.lines)")
    }

    /// What the agent refuses as a row identifier by its values: integers growing every row, over 10 rows or more.
    @Test func aColumnGrowingEveryRowIsFlaggedFromTenRows() throws {
        func report(rows: Int) throws -> CSVImportReport {
            var text = "seq,x,label\n"
            for i in 1...rows { text += "\(i * 3),\(i % 3),\(i % 2)\n" }
            return CSVImportReport(file: "f.csv", database: "d.sqlite", table: "t", rows: rows, columns: try infer(text), outcome: .created)
        }
        #expect(try report(rows: 10).identifierColumns.map(\.name) == ["seq"])
        #expect(try report(rows: 10).lines.contains("next: strata-agent --database d.sqlite --table t --label-column label --exclude-columns seq ..."))
        #expect(try report(rows: 9).identifierColumns.isEmpty)
    }
}
