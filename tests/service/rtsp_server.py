"""A real RTSP server on loopback for the stream tests: GStreamer's RTSP server library (Debian's
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-good and -bad), run by the system's
python3 (the project's virtual environment has no GObject bindings).

    /usr/bin/python3 rtsp_server.py PORT MOUNT CLIP.mp4

Serves the H.264 track of CLIP at rtsp://127.0.0.1:PORT/MOUNT, in real time, over RTP/UDP or
interleaved in the RTSP TCP connection (what the client asks for). Each client gets the clip
from its start; at its end the stream ends. Prints "ready" once listening; stops on SIGTERM.

ffmpeg cannot stand in: its "-rtsp_flags listen" only *receives* a stream that a client pushes
(ANNOUNCE/RECORD); it does not serve one to a client that asks to PLAY.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = '( filesrc location="{clip}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'


def main() -> None:
    port, mount, clip = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(clip=clip.replace('"', '\\"')))
    factory.set_shared(False)
    server.get_mount_points().add_factory(mount if mount.startswith("/") else "/" + mount, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
