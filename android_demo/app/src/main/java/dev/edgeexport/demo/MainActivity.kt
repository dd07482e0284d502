package dev.edgeexport.demo

import android.app.Activity
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.util.TypedValue
import android.widget.LinearLayout
import android.widget.TextView
import java.util.concurrent.Executors

/**
 * Loads manifest.json, the .tflite it names and sample_input.json from assets, classifies the sample and
 * shows the top prediction, the latency measured here and the simulated latency from the manifest.
 */
class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(48, 96, 48, 48)
        }
        val title = text(column, 22f)
        val prediction = text(column, 28f)
        val measured = text(column, 18f)
        val simulated = text(column, 18f)
        val details = text(column, 14f)
        setContentView(column)
        title.text = "Loading bundle…"

        val main = Handler(Looper.getMainLooper())
        worker.execute {
            val result = runCatching {
                val manifest = BundleManifest.parse(assets.open("manifest.json").bufferedReader().use { it.readText() })
                val sample = SampleInput.parse(assets.open("sample_input.json").bufferedReader().use { it.readText() })
                val answer = Classifier(this, manifest).use { it.classify(sample) }
                Triple(manifest, sample, answer)
            }
            main.post {
                result.onSuccess { (manifest, sample, answer) ->
                    title.text = "${manifest.modelName} ${manifest.modelVersion} (${manifest.preset})"
                    prediction.text = "Prediction: ${answer.label} (score %.3f)".format(answer.score) +
                        (sample.label?.let { "\nExpected: $it" } ?: "")
                    measured.text = "Measured here: %.3f ms (median of %d runs)".format(answer.medianMs, answer.runs)
                    val sim = manifest.simulated.firstOrNull()
                    simulated.text = if (sim == null) "Simulated: not in manifest" else
                        "Simulated on ${sim.device}: %.3f ms".format(sim.p50Ms) +
                            (if (sim.lowMs != null && sim.highMs != null) " (%.3f–%.3f)".format(sim.lowMs, sim.highMs) else "")
                    details.text = "Artifact ${manifest.artifactPath}; verified: ${manifest.verified ?: "not run"}; " +
                        manifest.inputs.joinToString("; ") { input ->
                            "${input.name}: preprocessing ${input.preprocessing?.kind} scale ${input.preprocessing?.scale}"
                        }
                }.onFailure { error ->
                    title.text = "Could not run the bundle"
                    prediction.text = error.toString()
                }
            }
        }
    }

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }

    private fun text(parent: LinearLayout, sp: Float): TextView = TextView(this).also {
        it.setTextSize(TypedValue.COMPLEX_UNIT_SP, sp)
        it.setPadding(0, 12, 0, 12)
        parent.addView(it)
    }
}
