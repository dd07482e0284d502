// swift-tools-version: 5.9
// An app package (Xcode 15+ or Swift Playgrounds 4.4+ open it directly; no .xcodeproj needed).
import PackageDescription
import AppleProductTypes

let package = Package(
    name: "DigitsDemo",
    platforms: [.iOS("17.0")],
    products: [
        .iOSApplication(
            name: "DigitsDemo",
            targets: ["DigitsDemo"],
            bundleIdentifier: "dev.edgeexport.DigitsDemo",
            displayVersion: "1.0",
            bundleVersion: "1",
            appIcon: .placeholder(icon: .calendar),
            accentColor: .presetColor(.blue),
            supportedDeviceFamilies: [.phone, .pad],
            supportedInterfaceOrientations: [.portrait]
        )
    ],
    targets: [
        .executableTarget(
            name: "DigitsDemo",
            path: "Sources/DigitsDemo",
            // Xcode compiles the .mlpackage to .mlmodelc when it processes resources.
            resources: [.process("Resources")]
        )
    ]
)
