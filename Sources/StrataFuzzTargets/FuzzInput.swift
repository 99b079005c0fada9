/// Reads structured choices off a fuzz input. Past the end every read yields zero, so any input (the
/// empty one included) is a valid program for a target and the fuzzer never wastes runs on "too short".
struct FuzzInput {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }
    var remaining: Int { max(0, bytes.count - offset) }

    mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    mutating func f32() -> Float { Float(bitPattern: u32()) }

    /// Up to `count` bytes (fewer at the end).
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, offset + max(0, count))
        defer { offset = max(offset, end) }
        return offset < end ? Array(bytes[offset..<end]) : []
    }

    /// Everything not read yet.
    mutating func rest() -> [UInt8] { take(remaining) }

    /// A count: mostly small values (what real peers send), sometimes the full 64-bit range, where the
    /// overflow and conversion bugs live. The selector byte keeps both reachable by one mutation.
    mutating func count64() -> UInt64 {
        switch u8() % 4 {
        case 0: return UInt64(u8())
        case 1: return UInt64(u16())
        default: return u64()
        }
    }
}

/// An invariant a target checks was broken: the libFuzzer entry turns it into a crash (so the input is
/// saved), the replay driver and the tests into a failure naming the input.
public struct FuzzFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) throws(FuzzFailure) {
    if !condition() { throw FuzzFailure(message()) }
}
