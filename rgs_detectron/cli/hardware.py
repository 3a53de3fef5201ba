"""What machine a measurement ran on, for the benchmark tools' reports."""
import platform


def cpu_model():
    """The CPU's model name as /proc/cpuinfo gives it (else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
