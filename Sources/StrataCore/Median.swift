extension Collection where Element == Double {
    /// The median (the mean of the two middle values for an even count); nil when empty.
    var median: Double? {
        guard !isEmpty else { return nil }
        let v = sorted(), mid = v.count / 2
        return v.count % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
    }
}
