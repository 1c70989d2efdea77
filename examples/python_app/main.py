"""python_app: a small web service built and imaged by rules_shiko.

  python_app --selftest            checks the generated proto code, the assets and the HTTP
                                   handlers, prints `python_app ok` and exits 0
  python_app [--port=8080]         serves HTTP (see server.py)
"""

import os
import sys

from absl import app
from absl import flags

from examples.python_app import server

FLAGS = flags.FLAGS

flags.DEFINE_integer("port", 8080, "TCP port to serve HTTP on.")
flags.DEFINE_string("host", "0.0.0.0", "Address to listen on.")
flags.DEFINE_bool("selftest", False, "Check the proto code, assets and handlers, then exit.")
flags.DEFINE_string("assets_dir", None,
                    "Directory of the processed assets (default: `assets` next to this file, "
                    "where the build puts them).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    assets_dir = FLAGS.assets_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "assets")
    assets = server.Assets(assets_dir)
    if FLAGS.selftest:
        server.selftest(assets)
        print("python_app ok")
        sys.stdout.flush()
        return 0
    server.serve(FLAGS.host, FLAGS.port, assets)
    return 0


if __name__ == "__main__":
    app.run(main)
