plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgeexport.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.edgeexport.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }

    // Keep the model uncompressed in the APK so it is read as-is (and could be memory-mapped).
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    // LiteRT 1.4.1: the current release line of the Interpreter API (org.tensorflow.lite.Interpreter), minSdk 21,
    // per the version table at https://ai.google.dev/edge/litert/android (checked 2026-11). The 2.x line adds the
    // CompiledModel API; this demo only needs the interpreter on the CPU.
    implementation("com.google.ai.edge.litert:litert:1.4.1")
}
