package dev.edgeexport.demo

import android.content.Context
import org.tensorflow.lite.Interpreter
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest
import kotlin.math.roundToInt

/** The top class, its score, and the measured latency (median of [runs] invocations, milliseconds). */
data class Prediction(val label: String, val index: Int, val score: Float, val medianMs: Double, val runs: Int)

/**
 * Runs the bundled .tflite exactly as manifest.json describes it: preprocessing, input quantization (for
 * int8/uint8 inputs), output dequantization and labels all come from the manifest.
 */
class Classifier(context: Context, private val manifest: BundleManifest) : AutoCloseable {
    private val interpreter: Interpreter

    init {
        val bytes = context.assets.open(manifest.artifactPath).use { it.readBytes() }
        val digest = MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
        check(digest == manifest.artifactSha256) { "${manifest.artifactPath}: sha256 differs from manifest.json" }
        val model = ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder())
        model.put(bytes).rewind()
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(2))
    }

    fun classify(sample: SampleInput, runs: Int = 50): Prediction {
        val input = manifest.inputs.first { it.name == sample.input }
        require(sample.raw.size == input.elementCount) { "sample has ${sample.raw.size} values, input needs ${input.elementCount}" }
        val preprocessing = checkNotNull(input.preprocessing) { "manifest input ${input.name} has no preprocessing" }
        val features = preprocessing.apply(sample.raw, input.channels)
        val inBuffer = encode(features, input)
        val output = manifest.outputs.first()
        val outBuffer = ByteBuffer.allocateDirect(output.elementCount * bytesPer(output.dtype)).order(ByteOrder.nativeOrder())

        // The first runs allocate and warm caches; time the rest.
        repeat(3) { invoke(inBuffer, outBuffer) }
        val times = DoubleArray(runs) {
            val start = System.nanoTime()
            invoke(inBuffer, outBuffer)
            (System.nanoTime() - start) / 1e6
        }
        times.sort()
        val scores = decode(outBuffer, output)
        val best = scores.indices.maxBy { scores[it] }
        val label = manifest.labels?.getOrNull(best) ?: best.toString()
        return Prediction(label, best, scores[best], times[runs / 2], runs)
    }

    private fun invoke(input: ByteBuffer, output: ByteBuffer) {
        input.rewind()
        output.rewind()
        interpreter.run(input, output)
    }

    private fun encode(values: FloatArray, tensor: TensorInfo): ByteBuffer {
        val buffer = ByteBuffer.allocateDirect(values.size * bytesPer(tensor.dtype)).order(ByteOrder.nativeOrder())
        val q = tensor.quantization
        for (v in values) {
            when (tensor.dtype) {
                "float32" -> buffer.putFloat(v)
                "int8" -> buffer.put(quantize(v, q!!, -128, 127).toByte())
                "uint8" -> buffer.put(quantize(v, q!!, 0, 255).toByte())
                else -> error("input dtype ${tensor.dtype} is not handled by this demo")
            }
        }
        return buffer.rewind() as ByteBuffer
    }

    private fun quantize(v: Float, q: Quantization, low: Int, high: Int): Int =
        ((v / q.scale).roundToInt() + q.zeroPoint).coerceIn(low, high)

    private fun decode(buffer: ByteBuffer, tensor: TensorInfo): FloatArray {
        buffer.rewind()
        val q = tensor.quantization
        return FloatArray(tensor.elementCount) {
            when (tensor.dtype) {
                "float32" -> buffer.getFloat()
                "int8" -> (q!!.scale * (buffer.get().toInt() - q.zeroPoint)).toFloat()
                "uint8" -> (q!!.scale * ((buffer.get().toInt() and 0xFF) - q.zeroPoint)).toFloat()
                else -> error("output dtype ${tensor.dtype} is not handled by this demo")
            }
        }
    }

    private fun bytesPer(dtype: String): Int = when (dtype) {
        "float32", "int32" -> 4
        "float16", "int16" -> 2
        "int8", "uint8", "bool" -> 1
        "int64" -> 8
        else -> error("unknown dtype $dtype")
    }

    override fun close() = interpreter.close()
}
