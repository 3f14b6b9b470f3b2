"""The web remote codec against the message shapes of MA's client and of captured answers."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import maweb
from netmidi.codec.maweb import (
    BUTTON_VIEW,
    DOT2,
    FADER_VIEW,
    GMA2,
    KEYS,
    ExecState,
    MawebDecodeError,
    PlaybacksRequest,
)

# gma2 fader view, as captured (ByteBitter "Commands"), trimmed to two executors of one block
GMA2_CAPTURE = """{"realtime":false,"responseType":"playbacks","responseSubType":2,"iPage":1,
"itemGroups":[{"itemsType":2,"cntPages":10000,"items":[[
{"i":{"t":"16","c":"#C0C0C0"},"oType":{"t":"HT","c":"#FFFFFF"},"oI":{"t":"3","c":"#FFFFFF"},
 "tt":{"t":"MAIN_MIX","c":"#FFFFFF"},"bC":"#000000","bdC":"#FFFF80",
 "cues":{"bC":"#3F3F20","items":[{"t":"    1 Cue","c":"#FFFFFF","pgs":{"v":1.000,"bC":"#0000FF"}}]},
 "combinedItems":1,"iExec":15,"isRun":1,"executorBlocks":[{
 "button1":{"id":0,"t":"Flash","s":false,"c":"#FFFF00","bdC":"#FFFF80","leftLED":{},"rightLED":{}},
 "button2":{"id":1,"t":"Go","s":false,"c":"#FFFFFF","bdC":"#FFFF80","leftLED":{},"rightLED":{}},
 "fader":{"bdC":"#FFFF80","tt":"HTP","v":0.424,"vT":"42%","min":0.000,"max":1.000},
 "button3":{"id":2,"t":"Top","s":false,"c":"#FFFFFF","bdC":"#FFFF80","leftLED":{},"rightLED":{}}}]},
{"i":{"t":"24","c":"#000000"},"oType":{"t":""},"oI":{"t":""},"tt":{"t":""},"bC":"#404040",
 "bdC":"#3D3D3D","cues":{},"combinedItems":1,"iExec":23,"isRun":0,"executorBlocks":[{
 "button1":{"id":0,"t":"Empty","s":false,"c":"#808080"},
 "button2":{"id":1,"t":"Empty","s":false,"c":"#808080"},
 "fader":{"v":0.000,"min":0.000,"max":0.000},
 "button3":{"id":2,"t":"Empty","s":false,"c":"#808080"}}]}
]]}],"worldIndex":0}"""

# old-firmware button executor with a virtual fader (MAWebToMidi), an unassigned one, on page 3
BUTTONS_CAPTURE = """{"realtime":false,"responseType":"playbacks","responseSubType":3,"iPage":3,
"itemGroups":[{"itemsType":3,"cntPages":10000,"items":[[
{"i":{"t":"101","c":"#C0C0C0"},"oType":{"t":"  LAS","c":"#FFFFFF"},"oI":{"t":"2","c":"#FFFFFF"},
 "tt":{"t":"Run Down","c":"#FFFFFF"},"bC":"#000000","bdC":"#FF80FF","cues":{},
 "combinedItems":1,"iExec":100,"isRun":1,
 "bottomButtons":{"items":[{"fader":{"v":1.000,"bC":"#808000"},"n":{"t":"Toggle","c":"#C0C0C0"}}]}},
{"i":{"t":"110","c":"#000000"},"oType":{"t":""},"oI":{"t":""},"tt":{"t":""},"bC":"#404040",
 "bdC":"#3D3D3D","cues":{},"combinedItems":1,"iExec":109}
]]}],"worldIndex":0}"""

JSON_VALUES: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
KEYS_OF_PLAYBACKS = st.sampled_from(
    ["session", "responseType", "iPage", "itemGroups", "items", "iExec", "isRun",
     "executorBlocks", "bottomButtons", "fader", "v", "status", "appType", "result"]
)  # fmt: skip
SHAPED: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 200) | st.floats() | st.just("playbacks"),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS_OF_PLAYBACKS, inner, max_size=5)
    ),
    max_leaves=25,
)


class RequestTests(SynchronousTestCase):
    def test_session_keepalive_close(self) -> None:
        """The session request, the bare keepalive and the logout, byte for byte."""
        self.assertEqual(maweb.session_request(), '{"session":0}')
        self.assertEqual(maweb.keepalive(7), '{"session":7}')
        self.assertEqual(maweb.close(7), '{"requestType":"close","session":7,"maxRequests":0}')

    def test_login(self) -> None:
        """Login carries the lower-case hex MD5, never the password."""
        hashed = maweb.password_hash("remote")
        self.assertEqual(hashed, "2c18e486683a3db1e645ad8523223b72")
        self.assertEqual(maweb.password_hash(""), "d41d8cd98f00b204e9800998ecf8427e")
        self.assertEqual(
            maweb.login("remote", hashed, 3),
            '{"requestType":"login","username":"remote",'
            '"password":"2c18e486683a3db1e645ad8523223b72","session":3,"maxRequests":10}',
        )

    def test_fader_and_button(self) -> None:
        """playbacks_userInput as MA's client sends it: type 1 faders, type 0 press/release."""
        self.assertEqual(
            maweb.fader_input(0, 3, 0.46255506607929514, 3),
            '{"requestType":"playbacks_userInput","execIndex":3,"pageIndex":0,'
            '"faderValue":0.462555,"type":1,"session":3,"maxRequests":0}',
        )
        self.assertEqual(
            maweb.button_input(0, 100, 0, False, 2),
            '{"requestType":"playbacks_userInput","cmdline":"","execIndex":100,"pageIndex":0,'
            '"buttonId":0,"pressed":false,"released":true,"type":0,"session":2,"maxRequests":0}',
        )
        pressed = json.loads(maweb.button_input(1, 4, 2, True, 2))
        self.assertEqual((pressed["pressed"], pressed["released"]), (True, False))

    def test_keys(self) -> None:
        """keyname names the request and adds autoSubmit only for keys that have it."""
        self.assertEqual(
            maweb.keyname(KEYS["CLEAR"], True, 5),
            '{"keyname":"CLEAR","value":1,"requestType":"keyname","session":5,"maxRequests":0}',
        )
        self.assertEqual(
            maweb.keyname(KEYS["SET"], True, 5),
            '{"keyname":"SET","value":1,"autoSubmit":true,"requestType":"keyname",'
            '"session":5,"maxRequests":0}',
        )
        self.assertEqual(
            maweb.hardkey(KEYS["GO_PLUS"], True, 4),
            '{"command":"LUA \'gma.canbus.hardkey(11, true, false)\'","session":4,'
            '"requestType":"command"}',
        )

    def test_key_table(self) -> None:
        """The table has MA's flags and the hardkey codes (SETUP is 118, not BACKUP's 117)."""
        self.assertEqual(KEYS["SETUP"].lua, 118)
        self.assertEqual(KEYS["BACKUP"].lua, 117)
        self.assertEqual((KEYS["MA"].press, KEYS["MA"].release), (False, True))
        self.assertEqual((KEYS["SET"].press, KEYS["SET"].release), (True, False))
        self.assertTrue(KEYS["HIGH"].auto_submit)
        self.assertEqual((KEYS["X1"].lua, KEYS["X20"].lua, KEYS["V10"].lua), (12, 31, 129))
        self.assertFalse(KEYS["NIPPLE"].remote)
        documented = (
            "SET PREV NEXT CLEAR FIXTURE_CHANNEL FIXTURE_GROUP_PRESET EXEC_CUE STORE_UPDATE OOPS"
            " ESC 0 1 2 3 4 5 6 7 8 9 PUNKT PLUS MINUS THRU IF AT FULL HIGH ENTER OFF ON ASSIGN"
            " LABEL COPY TIME PAGE MACRO DELETE GOTO GO_PLUS GO_MINUS PAUSE SELECT FIXTURE SEQU"
            " CUE PRESET EDIT UPDATE EXEC STORE GROUP PROG_ONLY SPECIAL_DIALOGUE SOLO ODD EVEN"
            " WINGS RESET MA layerMode featureSort fixtureSort channelSort hideName"
        ).split()
        self.assertEqual({k for k, info in KEYS.items() if info.remote}, set(documented))
        self.assertEqual(len(KEYS) - len(documented), 65)
        for digit in "0123456789":
            self.assertTrue(KEYS[digit].press and KEYS[digit].release)

    def test_playbacks_request(self) -> None:
        """The poll has MA's fields; the button view asks for extended button executors."""
        request = PlaybacksRequest(0, FADER_VIEW, (0,), (10,), (2,))
        self.assertEqual(
            request.encode(4),
            '{"requestType":"playbacks","startIndex":[0],"itemsCount":[10],"pageIndex":0,'
            '"itemsType":[2],"view":2,"execButtonViewMode":1,"buttonsViewMode":0,'
            '"session":4,"maxRequests":1}',
        )
        buttons = json.loads(PlaybacksRequest(1, BUTTON_VIEW, (100,), (90,), (3,)).encode(4))
        self.assertEqual(buttons["execButtonViewMode"], 2)


class PlanTests(SynchronousTestCase):
    def test_gma2_blocks_of_five(self) -> None:
        """gma2 polls whole blocks of 5, one request per page and view."""
        plan = maweb.plan_polls(GMA2, {(0, 3), (0, 11), (0, 101), (1, 0)})
        self.assertEqual(
            plan,
            [
                PlaybacksRequest(0, FADER_VIEW, (0,), (15,), (2,)),
                PlaybacksRequest(0, BUTTON_VIEW, (100,), (5,), (3,)),
                PlaybacksRequest(1, FADER_VIEW, (0,), (5,), (2,)),
            ],
        )

    def test_dot2_rows(self) -> None:
        """dot2: fader view with one group per row, a fader group added; B-wings in view 3."""
        plan = maweb.plan_polls(DOT2, {(0, 104), (0, 200), (0, 205), (0, 300), (0, 807)})
        self.assertEqual(
            plan,
            [
                PlaybacksRequest(0, FADER_VIEW, (0, 104, 200), (1, 1, 6), (2, 3, 3)),
                PlaybacksRequest(0, BUTTON_VIEW, (300, 807), (1, 1), (3, 3)),
            ],
        )

    def test_exists(self) -> None:
        """Executor ranges per console type."""
        self.assertTrue(maweb.exists(GMA2, 89))
        self.assertFalse(maweb.exists(GMA2, 200))
        self.assertFalse(maweb.exists(DOT2, 22))
        self.assertTrue(maweb.exists(DOT2, 815))
        self.assertFalse(maweb.exists(DOT2, 816))


class DecodeTests(SynchronousTestCase):
    def test_server_ready(self) -> None:
        """The greeting, spelled with the console's space after the comma."""
        message = maweb.decode('{"status":"server ready", "appType":"dot2"}')
        self.assertEqual(message, maweb.ServerReady(app_type="dot2"))

    def test_session_messages(self) -> None:
        """Session assignment, the connection limit and a duplicate worldIndex key."""
        self.assertEqual(
            maweb.decode('{"realtime":false,"session":1,"forceLogin":true,"worldIndex":0}'),
            maweb.SessionInfo(session=1, force_login=True),
        )
        self.assertEqual(
            maweb.decode('{"realtime":false,"connections_limit_reached":"","session":-2}'),
            maweb.SessionInfo(session=-2, limit_reached=True),
        )
        self.assertEqual(
            maweb.decode('{"realtime":false,"session":4,"worldIndex":0,"worldIndex":0}'),
            maweb.SessionInfo(session=4),
        )

    def test_login_result(self) -> None:
        """The verbatim dot2 login answer."""
        text = (
            '{"prompt":" [Fixture]>","promptcolor":"#808080","realtime":false,'
            '"responseType":"login","result":true,"worldIndex":0}'
        )
        self.assertEqual(maweb.decode(text), maweb.LoginResult(ok=True))
        self.assertEqual(
            maweb.decode('{"responseType":"login","result":false}'), maweb.LoginResult(ok=False)
        )

    def test_gma2_capture(self) -> None:
        """Fader value and run state of a captured gma2 answer; the empty executor reads 0."""
        message = maweb.decode(GMA2_CAPTURE)
        assert isinstance(message, maweb.Playbacks)
        self.assertEqual(message.page, 1)
        self.assertEqual(
            dict(message.executors), {15: ExecState(0.424, True), 23: ExecState(0.0, False)}
        )

    def test_button_executors(self) -> None:
        """Button executors: the virtual fader from bottomButtons; unassigned ones have none."""
        message = maweb.decode(BUTTONS_CAPTURE)
        assert isinstance(message, maweb.Playbacks)
        self.assertEqual(message.page, 3)
        self.assertEqual(
            dict(message.executors), {100: ExecState(1.0, True), 109: ExecState(None, None)}
        )

    def test_wide_executor(self) -> None:
        """combinedItems 2: block k is executor iExec + k."""
        item = {
            "iExec": 4,
            "combinedItems": 2,
            "isRun": 1,
            "executorBlocks": [{"fader": {"v": 0.5}}, {"fader": {"v": 0.25}}],
        }
        text = json.dumps({"responseType": "playbacks", "iPage": 2, "itemGroups": [
            {"itemsType": 2, "items": [[item]]}]})  # fmt: skip
        message = maweb.decode(text)
        assert isinstance(message, maweb.Playbacks)
        self.assertEqual(
            dict(message.executors), {4: ExecState(0.5, True), 5: ExecState(0.25, True)}
        )

    def test_other_responses(self) -> None:
        """Typed responses that netmidi does not use, and a typeless message."""
        self.assertEqual(
            maweb.decode('{"responseType":"keyname","text":"Clear","session":3}'),
            maweb.Response(session=3, response_type="keyname"),
        )
        self.assertEqual(maweb.decode("{}"), maweb.Message())

    def test_malformed(self) -> None:
        """Each malformed shape raises MawebDecodeError saying what was wrong."""
        for text, words in [
            ("{", "not JSON"),
            ("[1]", "expected an object"),
            ('{"session":"1"}', "session"),
            ('{"responseType":3}', "responseType"),
            ('{"responseType":"playbacks","iPage":1}', "itemGroups"),
            ('{"responseType":"playbacks","iPage":1,"itemGroups":[{"items":[[{"iExec":1.5}]]}]}',
             "iExec"),
            ('{"responseType":"playbacks","iPage":1,"itemGroups":[{"items":[[{"iExec":1,'
             '"executorBlocks":[{"fader":{"v":"x"}}]}]]}]}', "fader.v"),
            ('{"status":"server ready","appType":2}', "appType"),
            ("[" * 100000, "not JSON"),
        ]:  # fmt: skip
            with self.assertRaises(MawebDecodeError) as caught:
                maweb.decode(text)
            self.assertIn(words, str(caught.exception))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200))
    def test_fuzz_bytes(self, data: bytes) -> None:
        """Arbitrary bytes decode or raise MawebDecodeError, nothing else."""
        try:
            maweb.decode(data)
        except MawebDecodeError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(JSON_VALUES)
    def test_fuzz_json(self, value: object) -> None:
        """Arbitrary JSON values decode or raise MawebDecodeError."""
        try:
            maweb.decode(json.dumps(value))
        except MawebDecodeError:
            pass

    @settings(max_examples=250, deadline=None)
    @given(SHAPED)
    def test_fuzz_near_playbacks(self, value: object) -> None:
        """Structures built from the real keys decode or raise MawebDecodeError."""
        if isinstance(value, dict):
            value = {"responseType": "playbacks", "iPage": 1, **value}
        try:
            maweb.decode(json.dumps(value))
        except MawebDecodeError:
            pass
