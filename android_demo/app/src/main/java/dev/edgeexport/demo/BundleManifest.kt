package dev.edgeexport.demo

import org.json.JSONArray
import org.json.JSONObject

// manifest.json as written by `edgeexport bundle` (schema edgeexport/schemas/manifest.schema.json, 2.x:
// preprocessing is per input, inside each entry of "inputs").
// Each parse function reads one object of the schema; the `schema:` comment above it names that object so
// tests/unit/test_demo_apps.py can check every key read here exists in the schema.

/** Affine quantization of a tensor: real = scale * (q - zeroPoint). */
data class Quantization(val scale: Double, val zeroPoint: Int)

data class TensorInfo(
    val name: String,
    val shape: List<Int>,
    val dtype: String,
    val layout: String?,
    val quantization: Quantization?,
    /** Inputs only: how raw values become this input, and the source model's name for it. */
    val preprocessing: Preprocessing? = null,
    val sourceName: String? = null,
) {
    val elementCount: Int get() = shape.fold(1) { acc, d -> acc * d }

    /** Channels of a channels-last tensor (the last dimension); 1 when the layout is not NHWC/NWC. */
    val channels: Int get() = if (layout == "NHWC" || layout == "NWC") shape.last() else 1
}

/** x = (raw * scale - mean[c]) / std[c], with c the channel of each element (channels-last order). */
data class Preprocessing(val kind: String, val scale: Double, val mean: List<Double>, val std: List<Double>) {
    fun apply(raw: FloatArray, channels: Int): FloatArray = FloatArray(raw.size) { i ->
        val c = i % channels
        val m = mean[if (mean.size == 1) 0 else c]
        val s = std[if (std.size == 1) 0 else c]
        ((raw[i] * scale - m) / s).toFloat()
    }
}

/** Simulated (not measured) latency in milliseconds on one device profile. */
data class SimulatedLatency(val device: String, val p50Ms: Double, val lowMs: Double?, val highMs: Double?)

data class BundleManifest(
    val modelName: String,
    val modelVersion: String,
    val artifactPath: String,
    val artifactSha256: String,
    val preset: String,
    val device: String?,
    val inputs: List<TensorInfo>,
    val outputs: List<TensorInfo>,
    val labels: List<String>?,
    val verified: Boolean?,
    val simulated: List<SimulatedLatency>,
) {
    companion object {
        private const val SUPPORTED_MAJOR = "2"

        // schema: #
        fun parse(text: String): BundleManifest {
            val root = JSONObject(text)
            val version = root.getString("schema_version")
            require(version.substringBefore('.') == SUPPORTED_MAJOR) { "manifest schema $version is not 2.x" }
            val model = parseModel(root.getJSONObject("model"))
            val artifact = parseArtifact(root.getJSONObject("artifact"))
            return BundleManifest(
                modelName = model.first,
                modelVersion = model.second,
                artifactPath = artifact.first,
                artifactSha256 = artifact.second,
                preset = root.getString("preset"),
                device = if (root.isNull("device")) null else root.getString("device"),
                inputs = inputs(root.getJSONArray("inputs")),
                outputs = tensors(root.getJSONArray("outputs")),
                labels = if (root.isNull("labels")) null else strings(root.getJSONArray("labels")),
                verified = if (root.isNull("verification")) null else parseVerification(root.getJSONObject("verification")),
                simulated = latencies(root.getJSONArray("simulated_latency")),
            )
        }

        // schema: #/properties/model
        private fun parseModel(o: JSONObject): Pair<String, String> = o.getString("name") to o.getString("version")

        // schema: #/properties/artifact
        private fun parseArtifact(o: JSONObject): Pair<String, String> = o.getString("path") to o.getString("sha256")

        // schema: #/properties/verification
        private fun parseVerification(o: JSONObject): Boolean? = if (o.isNull("passed")) null else o.getBoolean("passed")

        // schema: #/$defs/input
        private fun parseInput(o: JSONObject): TensorInfo = parseTensor(o).copy(
            preprocessing = parsePreprocessing(o.getJSONObject("preprocessing")),
            sourceName = if (o.isNull("source_name")) null else o.getString("source_name"),
        )

        // schema: #/$defs/preprocessing
        private fun parsePreprocessing(o: JSONObject) = Preprocessing(
            kind = o.getString("kind"),
            scale = o.getDouble("scale"),
            mean = doubles(o.getJSONArray("mean")),
            std = doubles(o.getJSONArray("std")),
        )

        // schema: #/$defs/tensor
        private fun parseTensor(o: JSONObject): TensorInfo {
            val dims = o.getJSONArray("shape")
            // A dynamic dimension (null) is the batch; the demo runs one sample.
            val shape = List(dims.length()) { i -> if (dims.isNull(i)) 1 else dims.getInt(i) }
            return TensorInfo(
                name = o.getString("name"),
                shape = shape,
                dtype = o.getString("dtype"),
                layout = if (o.isNull("layout")) null else o.getString("layout"),
                quantization = if (o.isNull("quantization")) null else parseQuantization(o.getJSONObject("quantization")),
            )
        }

        // schema: #/$defs/tensor/properties/quantization
        private fun parseQuantization(o: JSONObject) = Quantization(o.getDouble("scale"), o.getInt("zero_point"))

        // schema: #/$defs/latency
        private fun parseLatency(o: JSONObject) = SimulatedLatency(
            device = o.getString("device"),
            p50Ms = o.getDouble("p50_ms"),
            lowMs = if (o.isNull("low_ms")) null else o.getDouble("low_ms"),
            highMs = if (o.isNull("high_ms")) null else o.getDouble("high_ms"),
        )

        private fun tensors(a: JSONArray) = List(a.length()) { parseTensor(a.getJSONObject(it)) }
        private fun inputs(a: JSONArray) = List(a.length()) { parseInput(a.getJSONObject(it)) }
        private fun latencies(a: JSONArray) = List(a.length()) { parseLatency(a.getJSONObject(it)) }
        private fun strings(a: JSONArray) = List(a.length()) { a.getString(it) }
        private fun doubles(a: JSONArray) = List(a.length()) { a.getDouble(it) }
    }
}

/** The bundled sample (sample_input.json): raw values before preprocessing, row-major, and its true label. */
data class SampleInput(val input: String, val raw: FloatArray, val label: String?) {
    companion object {
        // schema: #/$defs/sample_input
        fun parse(text: String): SampleInput {
            val o = JSONObject(text)
            val values = o.getJSONArray("raw")
            return SampleInput(
                input = o.getString("input"),
                raw = FloatArray(values.length()) { values.getDouble(it).toFloat() },
                label = if (o.isNull("label")) null else o.getString("label"),
            )
        }
    }
}
