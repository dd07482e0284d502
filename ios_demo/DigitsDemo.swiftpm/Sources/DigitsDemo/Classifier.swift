import CoreML
import Foundation

/// The top class, its score and the measured latency (median of `runs` predictions, milliseconds).
struct Prediction {
    let label: String
    let score: Double
    let medianMs: Double
    let runs: Int
}

/// Runs the bundled Core ML model exactly as manifest.json describes it: tensor names, shapes, preprocessing
/// and labels come from the manifest.
final class Classifier {
    private let model: MLModel
    private let manifest: BundleManifest

    init(manifest: BundleManifest, bundle: Bundle = .module) throws {
        self.manifest = manifest
        let base = (manifest.artifact.path as NSString).deletingPathExtension
        let configuration = MLModelConfiguration()
        configuration.computeUnits = .all
        if let compiled = bundle.url(forResource: base, withExtension: "mlmodelc") {
            model = try MLModel(contentsOf: compiled, configuration: configuration)
        } else if let package = bundle.url(forResource: base, withExtension: "mlpackage") {
            // Resources copied without compilation (e.g. .copy): compile once at run time.
            model = try MLModel(contentsOf: try MLModel.compileModel(at: package), configuration: configuration)
        } else {
            throw DemoError.missing("\(base).mlmodelc or \(manifest.artifact.path)")
        }
    }

    func classify(_ sample: SampleInput, runs: Int = 50) throws -> Prediction {
        guard let input = manifest.inputs.first(where: { $0.name == sample.input }),
              let output = manifest.outputs.first else {
            throw DemoError.unsupported("manifest has no input named \(sample.input)")
        }
        let features = input.preprocessing.apply(sample.raw, channels: input.channels)
        let array = try MLMultiArray(shape: input.fixedShape.map { NSNumber(value: $0) }, dataType: .float32)
        guard array.count == features.count else {
            throw DemoError.unsupported("sample has \(features.count) values, input needs \(array.count)")
        }
        for (index, value) in features.enumerated() {
            array[index] = NSNumber(value: Float(value))
        }
        let provider = try MLDictionaryFeatureProvider(dictionary: [input.name: MLFeatureValue(multiArray: array)])

        // The first predictions load and specialise the model for the compute unit; time the rest.
        for _ in 0..<3 { _ = try model.prediction(from: provider) }
        var times: [Double] = []
        var result: MLFeatureProvider = provider
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            result = try model.prediction(from: provider)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        guard let scores = result.featureValue(for: output.name)?.multiArrayValue else {
            throw DemoError.unsupported("model has no output named \(output.name)")
        }
        var best = 0
        for index in 0..<scores.count where scores[index].doubleValue > scores[best].doubleValue {
            best = index
        }
        let labels = manifest.labels ?? []
        let label = best < labels.count ? labels[best] : String(best)
        return Prediction(label: label, score: scores[best].doubleValue, medianMs: times.sorted()[runs / 2], runs: runs)
    }
}
