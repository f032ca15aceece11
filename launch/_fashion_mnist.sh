# Sourced by the launch scripts: make sure the Fashion-MNIST idx files are on this machine.
# They come from the Debian package dataset-fashion-mnist (offline); $FASHION_MNIST_DIR may
# point at a directory of the four idx files instead.
if [[ -z "${FASHION_MNIST_DIR:-}" && ! -d /usr/share/datasets/fashion-mnist ]]; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    apt-get install -y -q dataset-fashion-mnist >/dev/null \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    echo "Fashion-MNIST not found. Install it with: sudo apt-get install dataset-fashion-mnist" \
      "(or set FASHION_MNIST_DIR to a directory holding the four idx files)." >&2
    exit 1
  fi
fi
