import SwiftUI

@main
struct DigitsDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}

/// Loads manifest.json, the model it names and sample_input.json from the app bundle, classifies the sample
/// and shows the prediction, the latency measured here and the simulated latency from the manifest.
struct ContentView: View {
    @State private var manifest: BundleManifest?
    @State private var sample: SampleInput?
    @State private var prediction: Prediction?
    @State private var failure: String?

    var body: some View {
        VStack(alignment: .leading, spacing: 16) {
            if let manifest {
                Text("\(manifest.model.name) \(manifest.model.version) (\(manifest.preset))").font(.title2)
            }
            if let prediction {
                Text("Prediction: \(prediction.label) (score \(prediction.score, specifier: "%.3f"))").font(.largeTitle)
                if let expected = sample?.label { Text("Expected: \(expected)") }
                Text("Measured here: \(prediction.medianMs, specifier: "%.3f") ms (median of \(prediction.runs) runs)")
            }
            if let simulated = manifest?.simulatedLatency.first {
                Text("Simulated on \(simulated.device): \(simulated.p50Ms, specifier: "%.3f") ms")
            } else if manifest != nil {
                Text("Simulated: not in manifest")
            }
            if let failure { Text(failure).foregroundStyle(.red) }
            Spacer()
        }
        .padding(24)
        .task { await run() }
    }

    private func run() async {
        do {
            guard let manifestURL = Bundle.module.url(forResource: "manifest", withExtension: "json"),
                  let sampleURL = Bundle.module.url(forResource: "sample_input", withExtension: "json") else {
                throw DemoError.missing("manifest.json or sample_input.json")
            }
            let manifest = try BundleManifest.load(from: manifestURL)
            let sample = try JSONDecoder().decode(SampleInput.self, from: Data(contentsOf: sampleURL))
            let prediction = try await Task.detached(priority: .userInitiated) {
                try Classifier(manifest: manifest).classify(sample)
            }.value
            self.manifest = manifest
            self.sample = sample
            self.prediction = prediction
        } catch {
            failure = "\(error)"
        }
    }
}
