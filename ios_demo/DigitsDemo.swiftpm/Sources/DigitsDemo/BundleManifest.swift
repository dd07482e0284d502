import Foundation

// manifest.json as written by `edgeexport bundle` (schema edgeexport/schemas/manifest.schema.json, 2.x:
// preprocessing is per input, inside each entry of "inputs").
// Each Decodable type reads one object of the schema; the `schema:` comment above it names that object so
// tests/unit/test_demo_apps.py can check every CodingKey exists in the schema.

// schema: #
struct BundleManifest: Decodable {
    let schemaVersion: String
    let model: ModelInfo
    let preset: String
    let device: String?
    let artifact: ArtifactInfo
    let inputs: [InputInfo]
    let outputs: [TensorInfo]
    let labels: [String]?
    let verification: Verification?
    let simulatedLatency: [SimulatedLatency]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case model, preset, device, artifact, inputs, outputs, labels, verification
        case simulatedLatency = "simulated_latency"
    }

    static func load(from url: URL) throws -> BundleManifest {
        let manifest = try JSONDecoder().decode(BundleManifest.self, from: Data(contentsOf: url))
        guard manifest.schemaVersion.split(separator: ".").first == "2" else {
            throw DemoError.unsupported("manifest schema \(manifest.schemaVersion) is not 2.x")
        }
        return manifest
    }
}

// schema: #/properties/model
struct ModelInfo: Decodable {
    let name: String
    let version: String

    enum CodingKeys: String, CodingKey {
        case name, version
    }
}

// schema: #/properties/artifact
struct ArtifactInfo: Decodable {
    let path: String
    let sha256: String

    enum CodingKeys: String, CodingKey {
        case path, sha256
    }
}

// schema: #/$defs/tensor
struct TensorInfo: Decodable {
    let name: String
    let shape: [Int?]
    let dtype: String
    let layout: String?

    enum CodingKeys: String, CodingKey {
        case name, shape, dtype, layout
    }

    /// The shape with a dynamic (null) batch dimension set to 1: the demo runs one sample.
    var fixedShape: [Int] { shape.map { $0 ?? 1 } }
    var channels: Int { (layout == "NHWC" || layout == "NWC") ? (fixedShape.last ?? 1) : 1 }
}

/// An input tensor with its preprocessing and the source model's name for it (manifest 2.x).
// schema: #/$defs/input
struct InputInfo: Decodable {
    let name: String
    let shape: [Int?]
    let dtype: String
    let layout: String?
    let sourceName: String?
    let preprocessing: Preprocessing

    enum CodingKeys: String, CodingKey {
        case name, shape, dtype, layout, preprocessing
        case sourceName = "source_name"
    }

    var fixedShape: [Int] { shape.map { $0 ?? 1 } }
    var channels: Int { (layout == "NHWC" || layout == "NWC") ? (fixedShape.last ?? 1) : 1 }
}

/// x = (raw * scale - mean[c]) / std[c], c the channel of each element (channels-last order).
// schema: #/$defs/preprocessing
struct Preprocessing: Decodable {
    let kind: String
    let scale: Double
    let mean: [Double]
    let std: [Double]

    enum CodingKeys: String, CodingKey {
        case kind, scale, mean, std
    }

    func apply(_ raw: [Double], channels: Int) -> [Double] {
        raw.enumerated().map { index, value in
            let c = index % max(channels, 1)
            let m = mean.count == 1 ? mean[0] : mean[c]
            let s = std.count == 1 ? std[0] : std[c]
            return (value * scale - m) / s
        }
    }
}

// schema: #/properties/verification
struct Verification: Decodable {
    let passed: Bool?

    enum CodingKeys: String, CodingKey {
        case passed
    }
}

/// Simulated (not measured) latency in milliseconds on one device profile.
// schema: #/$defs/latency
struct SimulatedLatency: Decodable {
    let device: String
    let p50Ms: Double
    let lowMs: Double?
    let highMs: Double?

    enum CodingKeys: String, CodingKey {
        case device
        case p50Ms = "p50_ms"
        case lowMs = "low_ms"
        case highMs = "high_ms"
    }
}

/// The bundled sample (sample_input.json): raw values before preprocessing, row-major, and its true label.
// schema: #/$defs/sample_input
struct SampleInput: Decodable {
    let input: String
    let raw: [Double]
    let label: String?

    enum CodingKeys: String, CodingKey {
        case input, raw, label
    }
}

enum DemoError: Error, CustomStringConvertible {
    case missing(String)
    case unsupported(String)

    var description: String {
        switch self {
        case .missing(let what): return "missing from the app bundle: \(what)"
        case .unsupported(let what): return what
        }
    }
}
