import Foundation
import GRDB
import StrataData
import StrataCore
import Testing
@testable import StrataStore

/// Tables as users have them (docs/PROTOCOL.md §8): a CSV imported with `sqlite3 .import` (every column TEXT),
/// DECIMAL and BOOLEAN columns, text labels, NULLs, an id column without a declared primary key.
@Suite struct RealTableTests {
    let dir = TempDir()

    func database(_ sql: String, arguments: [[(any DatabaseValueConvertible)?]] = [], insert: String? = nil) throws -> String {
        let path = dir.file("t-\(UUID().uuidString.prefix(6)).sqlite")
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: sql)
            if let insert {
                for row in arguments { try db.execute(sql: insert, arguments: StatementArguments(row)) }
            }
        }
        return path
    }

    /// What `sqlite3 x.sqlite ".import --csv applicants.csv applicants"` makes (checked with sqlite3 3.40):
    /// every column TEXT, every value the field's text as it was (spaces kept), an empty field as ''.
    func csvImport(_ csv: String, table: String = "applicants") throws -> String {
        let lines = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = lines[0]
        let ddl = "CREATE TABLE \"\(table)\"(" + header.map { "\"\($0)\" TEXT" }.joined(separator: ", ") + ");"
        let insert = "INSERT INTO \"\(table)\" VALUES (" + header.map { _ in "?" }.joined(separator: ", ") + ")"
        return try database(ddl, arguments: lines.dropFirst().map { $0.map { $0 as (any DatabaseValueConvertible)? } }, insert: insert)
    }

    func load(_ path: String, table: String = "applicants", features: [String]? = nil, label: String = "risk",
              split: String? = "split", exclude: [String] = [], nulls: NullPolicy = .refuse) throws -> LoadedSamples {
        // Without a split column, half the rows are evaluation rows (row keys 1, 3, 4, 5, 6, 11, 12 of 1…12).
        try SampleDataSource(databasePath: path, selection: .table(name: table, featureColumns: features), labelColumn: label,
                             splitColumn: split, testFraction: 0.5, excludedColumns: exclude, nullPolicy: nulls).load()
    }

    // MARK: numbers stored as text, DECIMAL, booleans

    @Test func aCSVImportIsReadAsNumbers() throws {
        let path = try csvImport("""
            age,income,debt_ratio,member,note,risk,split
            34, 52000.50 ,1e-1,yes,first,1,train
            41,48000,-0.2,No,,0,train
            29,+61000,.35,TRUE,x,1,test
            52,1e3,3.,f,,0,train
            """)
        let loaded = try load(path)
        #expect(loaded.featureColumns == ["age", "income", "debt_ratio", "member"])
        #expect(loaded.columns.map(\.kind) == [.textNumerals, .textNumerals, .textNumerals, .boolean])
        #expect(loaded.columns.allSatisfy { $0.declaredType == "TEXT" })
        #expect(loaded.train.features == [34, 52000.5, 0.1, 1, 41, 48000, -0.2, 0, 52, 1000, 3, 0])
        #expect(loaded.test.features == [29, 61000, 0.35, 1])
        #expect(loaded.train.labels == [1, 0, 0] && loaded.labelKind == .numeric(.textNumerals))
        // The text column is left out and said so: the column, the row and the value.
        #expect(loaded.skippedColumns == [ColumnNote(name: "note", reason: "TEXT column; row 1 holds 'first'")])
        let summary = loaded.summaryLines.joined(separator: "\n")
        #expect(summary.contains("features (4, in model order): 1. age text numerals (TEXT); 2. income text numerals (TEXT); 3. debt_ratio text numerals (TEXT); 4. member boolean (TEXT)"), "\(summary)")
        #expect(summary.contains("columns not used: note (TEXT column; row 1 holds 'first')"), "\(summary)")
        #expect(summary.contains("label: risk, numeric (text numerals)"), "\(summary)")
    }

    @Test func textThatIsNotANumberNamesColumnRowAndValue() throws {
        let path = try csvImport("""
            age,income,risk
            34,52000,1
            41,n/a,0
            """)
        // Listed, the column must hold numbers: 'n/a' is not one.
        do {
            _ = try load(path, features: ["age", "income"], split: nil)
            Issue.record("loaded")
        } catch let error as DataSourceError {
            #expect(error == .nonNumericValue(column: "income", row: 2, value: "n/a"))
            #expect(error.description.hasPrefix("row 2, column 'income' holds 'n/a', which is not a number"))
            #expect(error.description.contains("--exclude-columns"))
        }
        for text in ["0x10", "nan", "inf", "1_000", "12%", "$5", "1e", "e5", ".", "-", "1.2.3", "12 000"] {
            #expect(ColumnValues.numeral(text) == nil, "\(text)")
        }
        for (text, value) in [("12", 12.0), ("-0.2", -0.2), ("+4", 4), (".5", 0.5), ("3.", 3), ("1e3", 1000), ("2.5E-4", 0.00025)] {
            #expect(ColumnValues.numeral(text) == value, "\(text)")
        }
    }

    @Test func decimalNumericAndBooleanColumns() throws {
        let path = try database("""
            CREATE TABLE loans (price DECIMAL(10,2), qty NUMERIC, approved BOOLEAN, flag BOOL, risk INTEGER);
            INSERT INTO loans VALUES ('12.50', '1e3', 1, 'yes', 0), (100, 7, 0, 'F', 1), (0.25, '3', TRUE, 'True', 0),
                                     (99.99, 2.5, FALSE, 'no', 1);
            """)
        let loaded = try load(path, table: "loans", split: nil)
        #expect(loaded.featureColumns == ["price", "qty", "approved", "flag"])
        #expect(loaded.columns.map(\.kind) == [.real, .real, .boolean, .boolean])
        #expect(loaded.columns.map(\.declaredType) == ["DECIMAL(10,2)", "NUMERIC", "BOOLEAN", "BOOL"])
        // Rows 1, 3, 4 are evaluation rows, row 2 a training row.
        let all: [Float] = loaded.test.features[0..<4] + loaded.train.features + loaded.test.features[4...]
        let expected: [Float] = [12.5, 1000, 1, 1, 100, 7, 0, 0, 0.25, 3, 1, 1, 99.99, 2.5, 0, 0]
        #expect(all == expected)
        #expect(loaded.columns[0].description == "price real (DECIMAL(10,2))")

        // A DECIMAL value SQLite could not convert stays text: an error naming it.
        let bad = try database("""
            CREATE TABLE loans (price DECIMAL(10,2), risk INTEGER);
            INSERT INTO loans VALUES (12.5, 0), ('12.50 USD', 1);
            """)
        #expect(throws: DataSourceError.nonNumericValue(column: "price", row: 2, value: "12.50 USD")) {
            try load(bad, table: "loans", split: nil)
        }
        // Booleans and other numbers in one column: a listed or numeric column is an error; a text column is left out.
        let mixed = try database("""
            CREATE TABLE m (a INTEGER, b TEXT, c REAL, risk INTEGER);
            INSERT INTO m VALUES ('yes', 'yes', 1.5, 0), (5, '5', 2.5, 1), (0, 'no', 3.5, 0);
            """)
        #expect(throws: DataSourceError.booleanMixedWithNumbers(column: "a", booleanRow: 1, booleanValue: "yes", numberRow: 2, number: 5)) {
            try load(mixed, table: "m", split: nil)
        }
        let withoutA = try load(mixed, table: "m", split: nil, exclude: ["a"]).skippedColumns
        #expect(withoutA == [ColumnNote(name: "b", reason: "mixes true/false words with other numbers")])
        // Beyond float32: refused rather than turned into infinity.
        let huge = try database("CREATE TABLE h (x REAL, risk INTEGER); INSERT INTO h VALUES (1e300, 0), (1, 1);")
        #expect(throws: DataSourceError.valueOutOfRange(column: "x", row: 1, value: "1e+300")) { try load(huge, table: "h", split: nil) }
    }

    // MARK: text labels

    @Test func textLabelsAreKeptUntilMappedThroughTheVocabulary() throws {
        let path = try csvImport("""
            age,income,risk,split
            34,52000,approved,train
            41,48000,declined,train
            29,61000, approved ,test
            52,39000,declined,test
            60,75000,approved,train
            """)
        let loaded = try load(path)
        #expect(loaded.labelKind == .strings && loaded.hasUnmappedLabels && !loaded.isReadyForTraining)
        #expect(loaded.trainLabelNames == ["approved", "declined", "approved"] && loaded.testLabelNames == ["approved", "declined"])
        #expect(loaded.train.labels.allSatisfy { $0.isNaN })
        #expect(loaded.labelCounts == LabelCounts(["approved": 3, "declined": 2]))

        // The federation's vocabulary: another agent also saw 'review'.
        let vocabulary = LabelCounts.merged([loaded.labelCounts!, LabelCounts(["review": 4, "approved": 1])]).vocabulary
        #expect(vocabulary.labels == ["approved", "declined", "review"])
        let mapped = try loaded.mappingLabels(through: vocabulary)
        #expect(mapped.train.labels == [0, 1, 0] && mapped.test.labels == [0, 1])
        #expect(mapped.isReadyForTraining && mapped.labelCounts == nil && mapped.featureColumns == ["age", "income"])

        // A label the vocabulary lacks is named, with its row count.
        let narrow = try LabelVocabulary(labels: ["approved"])
        #expect(throws: DataSourceError.unknownLabel(column: "risk", label: "declined", rows: 2, vocabulary: ["approved"])) {
            try loaded.mappingLabels(through: narrow)
        }
        let message = DataSourceError.unknownLabel(column: "risk", label: "declined", rows: 2, vocabulary: ["approved"]).description
        #expect(message == "label column 'risk': 'declined' (2 rows) is not in the federation's label vocabulary ['approved']: correct the label, or filter those rows out in a --query")

        // Numeric labels (integers, or numerals stored as text) stay numbers; mapping leaves them alone.
        let numeric = try load(try csvImport("age,risk\n1,0\n2,1\n3,2\n4,1", table: "applicants"), split: nil)
        #expect(numeric.labelKind == .numeric(.textNumerals) && numeric.labelCounts == nil)
        #expect(try numeric.mappingLabels(through: vocabulary).train.labels == numeric.train.labels)
        // A number among text labels is a class name too: written as an integer when it is one.
        let mixed = try load(try database("""
            CREATE TABLE applicants (age REAL, risk);
            INSERT INTO applicants VALUES (1, 'approved'), (2, 3), (3, 2.5), (4, ' 07 ');
            """), split: nil)
        #expect(Set((mixed.trainLabelNames ?? []) + (mixed.testLabelNames ?? [])) == ["approved", "3", "2.5", "07"])
    }

    // MARK: NULLs

    /// Row 2: income NULL; row 3: label NULL; row 4: debt_ratio empty text; row 5: everything present.
    func tableWithNulls() throws -> String {
        try csvImport("""
            age,income,debt_ratio,risk,split
            30,1000,0.5,1,train
            40,,0.25,0,train
            50,3000,0.75,,train
            60,4000,,1,test
            70,5000,1.0,0,test
            80,6000,0.125,1,train
            """)
    }

    @Test func nullsAreRefusedByDefault() throws {
        let path = try tableWithNulls()
        // '' from the CSV counts as NULL; the first one in row order is named.
        #expect(throws: DataSourceError.nullValue(column: "income", row: 2)) { try load(path) }
        #expect(throws: DataSourceError.nullValue(column: "income", row: 2)) { try load(path, nulls: .refuse) }
        #expect(DataSourceError.nullValue(column: "income", row: 2).description
                == "row 2, column 'income' is NULL (or empty text): choose --null-policy skip (leave such rows out) or impute (fill missing feature values with the federation's mean), fill the values (e.g. COALESCE in a --query), or filter those rows out")
        // A NULL label is refused too.
        #expect(throws: DataSourceError.nullValue(column: "risk", row: 3)) { try load(path, features: ["age"]) }
    }

    @Test func skipLeavesRowsOutAndCountsThem() throws {
        let loaded = try load(try tableWithNulls(), nulls: .skip)
        #expect(loaded.train.features == [30, 1000, 0.5, 80, 6000, 0.125])
        #expect(loaded.test.features == [70, 5000, 1])
        #expect(loaded.rows.read == 6 && loaded.rows.skippedForMissingFeature == 2 && loaded.rows.skippedForMissingLabel == 1)
        #expect(loaded.rows.used == 3 && !loaded.hasMissingValues && loaded.isReadyForTraining)
        #expect(loaded.columns.map(\.missingCount) == [0, 1, 1])
        #expect(loaded.rows.description == "6 read, 3 skipped (2 for a missing feature value, 1 for a missing label)")
    }

    @Test func imputeMarksMissingValuesUntilTheFederatedMeansFillThem() throws {
        let loaded = try load(try tableWithNulls(), nulls: .impute)
        // Rows 1, 2, 6 train (row 3's label is NULL: left out, never imputed), rows 4, 5 test.
        #expect(loaded.rows.skippedForMissingLabel == 1 && loaded.rows.skippedForMissingFeature == 0 && loaded.rows.missingValuesKept == 2)
        #expect(loaded.train.count == 3 && loaded.test.count == 2)
        #expect(loaded.train.features[4].isNaN && loaded.test.features[2].isNaN)
        #expect(loaded.hasMissingValues && !loaded.isReadyForTraining)
        // The training rows' statistics count the missing value and leave it out of the mean.
        let stats = loaded.featureStatistics()
        #expect(stats[1].count == 2 && stats[1].missingCount == 1 && stats[1].mean == 3500)
        #expect(stats[0].count == 3 && stats[0].mean == 50)
        // The coordinator's federated means fill them, in training and evaluation rows.
        let filled = loaded.imputing(means: [55, 3210, 0.5])
        #expect(filled.train.features == [30, 1000, 0.5, 40, 3210, 0.25, 80, 6000, 0.125])
        #expect(filled.test.features == [60, 4000, 0.5, 70, 5000, 1])
        #expect(filled.isReadyForTraining)
        // A NULL split value is never guessed either.
        let split = try database("""
            CREATE TABLE s (x REAL, risk INTEGER, split TEXT);
            INSERT INTO s VALUES (1, 0, 'train'), (2, 1, NULL), (3, 0, 'test');
            """)
        #expect(throws: DataSourceError.nullValue(column: "split", row: 2)) { try load(split, table: "s") }
        #expect(try load(split, table: "s", nulls: .impute).rows.skippedForMissingSplit == 1)
        // Every row left out: said so.
        let allNull = try database("CREATE TABLE n (x REAL, risk INTEGER); INSERT INTO n VALUES (NULL, 0), (NULL, 1);")
        #expect(throws: DataSourceError.self) { try load(allNull, table: "n", split: nil, nulls: .skip) }
        do { _ = try load(allNull, table: "n", split: nil, nulls: .skip) } catch let error as DataSourceError {
            #expect(error.description.contains("every row was left out for a missing value (2 read, 2 skipped (2 for a missing feature value))"), "\(error)")
        }
    }

    // MARK: identifiers

    func applicants(idColumn: String, declaration: String = "INTEGER", rows: Int = 12) throws -> String {
        var sql = "CREATE TABLE applicants (\(idColumn) \(declaration), age INTEGER, income REAL, risk INTEGER);"
        for i in 1...rows {
            sql += "INSERT INTO applicants VALUES (\(i + 100), \(20 + (i * 7) % 40), \(Double(i) * 1234.5), \(i % 2));"
        }
        return try database(sql)
    }

    @Test func anIdColumnWithoutAPrimaryKeyIsRefusedNotTaken() throws {
        let path = try applicants(idColumn: "id")
        do {
            _ = try load(path, split: nil)
            Issue.record("the id column became a feature")
        } catch let error as DataSourceError {
            #expect(error == .likelyIdentifierColumns(source: "table 'applicants'", columns: [ColumnNote(name: "id", reason: "its name is an identifier's")],
                                                      others: ["age", "income"]))
            #expect(error.description == "table 'applicants': column 'id': its name is an identifier's — it looks like a row identifier, not a feature, and an identifier taken as a feature spoils the model. Nothing is guessed: leave it out with --exclude-columns id or name the features yourself: --feature-columns age,income (a table whose id column is declared INTEGER PRIMARY KEY needs neither)")
        }
        // Either fix works.
        #expect(try load(path, split: nil, exclude: ["id"]).featureColumns == ["age", "income"])
        #expect(try load(path, features: ["income", "age"], split: nil).featureColumns == ["income", "age"])
        #expect(try load(path, features: ["id", "age"], split: nil).featureColumns == ["id", "age"])   // listed: the user's choice
        // Declared as the primary key, it is no feature and no problem.
        #expect(try load(try applicants(idColumn: "id", declaration: "INTEGER PRIMARY KEY"), split: nil).featureColumns == ["age", "income"])
        // Other names an identifier goes by.
        for name in ["customer_id", "applicantId", "ID", "\"index\"", "\"Unnamed: 0\""] {
            #expect(throws: DataSourceError.self, "\(name)") { try load(try applicants(idColumn: name), split: nil) }
        }
        for name in ["paid", "valid", "grid", "UUID_count"] {
            #expect(throws: DataSourceError.self, "\(name)") { try load(try applicants(idColumn: name), split: nil) }   // by value: 101, 102, …
            #expect(ColumnValues.identifierReason(name: name, values: [3, 1, 2], rowOrderIsInsertionOrder: true) == nil, "\(name)")
        }
    }

    @Test func anIdentifierIsRecognisedByItsValues() throws {
        // Consecutive integers in any order (a numbering, as text from a CSV too).
        let shuffled = [7, 3, 10, 1, 5, 2, 9, 4, 8, 6].map(Double.init)
        #expect(ColumnValues.identifierReason(name: "applicant", values: shuffled, rowOrderIsInsertionOrder: false)
                == "its 10 values are the distinct integers 1…10, one per row")
        // An agent's share of a numbering: increasing with every row, in a table's rowid order only.
        let share = [3, 17, 22, 40, 41, 58, 60, 77, 91, 95].map(Double.init)
        #expect(ColumnValues.identifierReason(name: "applicant", values: share, rowOrderIsInsertionOrder: true)?.contains("increase with every row") == true)
        #expect(ColumnValues.identifierReason(name: "applicant", values: share, rowOrderIsInsertionOrder: false) == nil)
        // Not identifiers: fewer than 10 rows, repeated values, fractions, missing values.
        #expect(ColumnValues.identifierReason(name: "n", values: Array(shuffled.prefix(9)), rowOrderIsInsertionOrder: true) == nil)
        #expect(ColumnValues.identifierReason(name: "n", values: shuffled.map { Double(Int($0) % 4) }, rowOrderIsInsertionOrder: true) == nil)
        #expect(ColumnValues.identifierReason(name: "n", values: shuffled.map { $0 + 0.5 }, rowOrderIsInsertionOrder: true) == nil)
        #expect(ColumnValues.identifierReason(name: "n", values: shuffled + [.nan], rowOrderIsInsertionOrder: true) == nil)

        // A CSV whose first column numbers the rows, under a name that says nothing.
        var csv = "no,age,risk\n"
        for i in 1...12 { csv += "\(i),\(30 + i % 5),\(i % 2)\n" }
        let path = try csvImport(csv)
        #expect(throws: DataSourceError.likelyIdentifierColumns(
            source: "table 'applicants'",
            columns: [ColumnNote(name: "no", reason: "its 12 values are the distinct integers 1…12, one per row")], others: ["age"])) {
            try load(path, split: nil)
        }
        // A query is checked the same way (SELECT * takes every column), and takes --feature-columns too.
        let query = { (features: [String]?, exclude: [String]) in
            try SampleDataSource(databasePath: path, selection: .query(sql: "SELECT * FROM applicants", featureColumns: features),
                                 labelColumn: "risk", excludedColumns: exclude).load()
        }
        #expect(throws: DataSourceError.self) { try query(nil, []) }
        #expect(try query(nil, ["no"]).featureColumns == ["age"])
        #expect(try query(["age"], []).featureColumns == ["age"])
    }

    // MARK: the column lists users type

    @Test func featureColumnListsAsUsersTypeThem() throws {
        #expect(SampleDataSource.columnList(["age,income,debt_ratio"]) == ["age", "income", "debt_ratio"])
        #expect(SampleDataSource.columnList(["age", "income"]) == ["age", "income"])            // repeated flag
        #expect(SampleDataSource.columnList(["age, income", ",debt_ratio,"]) == ["age", "income", "debt_ratio"])
        #expect(SampleDataSource.columnList([]) == [])

        let path = try applicants(idColumn: "id")
        let listed = SampleDataSource.columnList(["income,age"])
        #expect(try load(path, features: listed, split: nil).featureColumns == ["income", "age"])
        #expect(throws: DataSourceError.labelAmongFeatures(column: "risk")) { try load(path, features: ["age", "risk"], split: nil) }
        #expect(throws: DataSourceError.duplicateFeatureColumn(column: "age")) { try load(path, features: ["age", "age"], split: nil) }
        #expect(throws: DataSourceError.columnNotFound(column: "agee", source: "table 'applicants'", available: ["id", "age", "income", "risk"])) {
            try load(path, split: nil, exclude: ["agee"])
        }
    }

    @Test func noUsableColumnSaysWhatWasLeftOut() throws {
        let path = try csvImport("name,city,risk\nann,paris,1\nbob,,0")
        do {
            _ = try load(path, split: nil)
            Issue.record("loaded")
        } catch let error as DataSourceError {
            #expect(error.description == "table 'applicants' has no numeric feature columns besides the label and split (left out: name (TEXT column; row 1 holds 'ann'); city (TEXT column; row 1 holds 'paris')): list them with --feature-columns")
        }
    }
}
