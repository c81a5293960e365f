"""Messages of varied MIME structure, shared by the unit tests of ENVELOPE and
BODYSTRUCTURE (tests/imap/test_bodystructure.py) and the comparison with Dovecot
(tests/interop/test_imap_structure_dovecot.py)."""

from __future__ import annotations

MESSAGES: dict[str, bytes] = {
    "simple": (
        b"Date: Mon, 7 Dec 2026 12:00:00 +0000\r\n"
        b"From: Alice Example <alice@example.test>\r\n"
        b'To: bob@example.test, "Carol, C." <carol@example.test>\r\n'
        b"Cc: dave@example.test\r\n"
        b"Subject: Hello\r\n"
        b"Message-ID: <1@example.test>\r\n"
        b"In-Reply-To: <0@example.test>\r\n"
        b"Bcc: eve@example.test\r\n"
        b"Reply-To: list@example.test\r\n"
        b"Sender: sec@example.test\r\n"
        b"\r\n"
        b"line one\r\n"
        b"line two\r\n"
    ),
    "bare_lf": (b"From: a@example.test\nSubject: bare\n  folded\n\nline\n\nthree\n"),
    "alt": (
        b"From: a@example.test\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="XX"\r\n'
        b"\r\n"
        b"preamble\r\n"
        b"--XX\r\n"
        b"Content-Type: text/plain; charset=UTF-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"h=C3=A9llo\r\n"
        b"--XX\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"\r\n"
        b"<p>hi</p>\r\n"
        b"\r\n"
        b"--XX--\r\n"
        b"epilogue\r\n"
    ),
    "mixed": (
        b"From: a@example.test\r\n"
        b"Content-Type: Multipart/Mixed; Boundary=b1\r\n"
        b"\r\n"
        b"--b1\r\n"
        b"\r\n"
        b"no header part\r\n"
        b"--b1\r\n"
        b'Content-Type: application/octet-stream; name="f.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="f.bin"; size=3\r\n'
        b"Content-ID: <c1@x>\r\n"
        b"Content-Description: a file\r\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        b"Content-Language: en, de\r\n"
        b"Content-Location: http://example.test/f\r\n"
        b"\r\n"
        b"AQID\r\n"
        b"--b1--\r\n"
    ),
    "nested": (
        b"From: a@example.test\r\n"
        b"Content-Type: multipart/mixed; boundary=outer\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n"
        b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"plain\r\n"
        b"--inner\r\n"
        b'Content-Type: multipart/related; boundary="in2"; type="text/html"\r\n'
        b"\r\n"
        b"--in2\r\n"
        b"Content-Type: text/html\r\n"
        b"\r\n"
        b"<b>x</b>\r\n"
        b"--in2\r\n"
        b"Content-Type: image/png\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"iVBORw0K\r\n"
        b"--in2--\r\n"
        b"--inner--\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"\xe9t\xe9\r\n"
        b"--outer--\r\n"
    ),
    "rfc822": (
        b"From: a@example.test\r\n"
        b"Subject: fwd\r\n"
        b"Content-Type: multipart/mixed; boundary=zz\r\n"
        b"\r\n"
        b"--zz\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"see below\r\n"
        b"--zz\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n"
        b"From: inner@example.test\r\n"
        b"To: x@example.test\r\n"
        b"Subject: inner\r\n"
        b"Date: Tue, 1 Dec 2026 00:00:00 +0100\r\n"
        b"Content-Type: multipart/alternative; boundary=yy\r\n"
        b"\r\n"
        b"--yy\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"inner text\r\n"
        b"--yy\r\n"
        b"Content-Type: text/html\r\n"
        b"\r\n"
        b"<i>inner</i>\r\n"
        b"--yy--\r\n"
        b"\r\n"
        b"--zz--\r\n"
    ),
    "digest": (
        b"From: a@example.test\r\n"
        b"Content-Type: multipart/digest; boundary=d\r\n"
        b"\r\n"
        b"--d\r\n"
        b"\r\n"
        b"From: one@example.test\r\n"
        b"Subject: one\r\n"
        b"\r\n"
        b"body one\r\n"
        b"--d\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"not a message\r\n"
        b"--d\r\n"
        b"\r\n"
        b"From: two@example.test\r\n"
        b"\r\n"
        b"body two\r\n"
        b"--d--\r\n"
    ),
    "rfc2231": (
        b"From: a@example.test\r\n"
        b"Content-Type: multipart/mixed; boundary=q\r\n"
        b"\r\n"
        b"--q\r\n"
        b"Content-Type: application/x-stuff;\r\n"
        b" title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
        b" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
        b' title*2="isn\'t it!"\r\n'
        b"Content-Disposition: attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n"
        b"\r\n"
        b"data\r\n"
        b"--q\r\n"
        b"Content-Type: text/plain; name*=iso-8859-1''%E9t%E9; CHARSET=US-ASCII\r\n"
        b"\r\n"
        b"x\r\n"
        b"--q--\r\n"
    ),
    "words": (
        b"From: =?UTF-8?B?w6l0w6k=?= <e@example.test>\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b'Cc: Team: a@example.test, "B" <b@example.test>;, c@example.test\r\n'
        b"Bcc: <@route1,@route2:user@example.test>\r\n"
        b"Reply-To: not an address\r\n"
        b'Subject: =?ISO-8859-1?Q?caf=E9?= and "quotes"\r\n'
        b"Sender: @\r\n"
        b"\r\n"
        b"body\r\n"
    ),
    "minimal": (b"\r\nno headers at all\r\n"),
    "no_close": (
        b"Content-Type: multipart/mixed; boundary=nc\r\n"
        b"\r\n"
        b"--nc\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"one\r\n"
        b"--nc\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"two\r\n"
        b"more"
    ),
    "bad_ct": (b"Content-Type: text\r\n\r\nbody\r\n"),
    "bad_ct2": (b"Content-Type: foo bar; x=\r\nContent-Transfer-Encoding: X-Weird\r\n\r\nbody\r\n"),
    "no_final_nl": (b"From: a@example.test\r\n\r\nlast line"),
    "ws_boundary": (
        b'Content-Type: multipart/mixed; boundary="w w"\r\n'
        b"\r\n"
        b"--w w  \r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"a\r\n"
        b"--w w\t\r\n"
        b"\r\n"
        b"b\r\n"
        b"--w w--  \r\n"
        b"epi\r\n"
    ),
    "top_rfc822": (
        b"From: a@example.test\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n"
        b"From: b@example.test\r\n"
        b"Subject: embedded\r\n"
        b"\r\n"
        b"hello\r\n"
    ),
    "header_only": (b"From: a@example.test\r\nSubject: no body"),
    "empty_parts": (
        b"Content-Type: multipart/mixed; boundary=e\r\n"
        b"\r\n"
        b"--e\r\n"
        b"--e\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"--e\r\n"
        b"\r\n"
        b"\r\n"
        b"--e--"
    ),
    "prefix_boundary": (
        b"Content-Type: multipart/mixed; boundary=ab\r\n"
        b"\r\n"
        b"--ab\r\n"
        b"Content-Type: multipart/mixed; boundary=abc\r\n"
        b"\r\n"
        b"--abc\r\n"
        b"\r\n"
        b"x\r\n"
        b"--abcd\r\n"
        b"\r\n"
        b"y\r\n"
        b"--ab--\r\n"
    ),
    "global": (
        b"From: a@example.test\r\n"
        b"Content-Type: multipart/mixed; boundary=g\r\n"
        b"\r\n"
        b"--g\r\n"
        b"Content-Type: message/global\r\n"
        b"\r\n"
        b"From: \xc3\xa9@example.test\r\n"
        b"Subject: \xc3\xa9\r\n"
        b"\r\n"
        b"x\r\n"
        b"--g\r\n"
        b"Content-Type: message/delivery-status\r\n"
        b"\r\n"
        b"Reporting-MTA: dns; x\r\n"
        b"--g--\r\n"
    ),
    "params_case": (
        b'Content-Type: TEXT/Plain; CharSet="ISO-8859-1"; Format=Flowed\r\n'
        b"Content-Transfer-Encoding: QUOTED-PRINTABLE\r\n"
        b"Content-Disposition: INLINE\r\n"
        b"\r\n"
        b"x=\r\n"
        b"y\r\n"
    ),
    "addr_edge": (
        b'From: "Joe Q. Public" <john.q.public@example.com>\r\n'
        b"To: Mary Smith <mary@x.test>, jdoe@one.test, Who? <one@y.test>\r\n"
        b'Cc: <boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>\r\n'
        b"Sender: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\n"
        b"Reply-To: a@b@c, user\r\n"
        b"Bcc: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\r\n"
        b"In-Reply-To: <x@y> <z@w>\r\n"
        b"Message-ID:   <m@x>  \r\n"
        b"Subject:  leading spaces \r\n"
        b"\r\n"
    ),
    "fold": (
        b"Subject: a\r\n"
        b"\tb   c \r\n"
        b"Date:  Mon,\r\n"
        b" 7 Dec 2026  \r\n"
        b"From:   Name  With   Spaces  <x@y>\r\n"
        b"In-Reply-To:\r\n"
        b" <a@b>\r\n"
        b"Message-ID: <m@x>\r\n"
        b'To: "q\\"x" <a@b>, \xc3\xa9 <c@d>\r\n'
        b"Cc: (comment only)\r\n"
        b"Bcc: a@b (Real Name)\r\n"
        b"\r\n"
        b"x\r\n"
    ),
    "subj8": (
        b"Subject: caf\xc3\xa9\ttab\r\n"
        b"Subject: second\r\n"
        b"From:\r\n"
        b"To: ,,a@b,,\r\n"
        b"Cc: <>\r\n"
        b"Reply-To: @x\r\n"
        b"\r\n"
    ),
    "mp_noboundary": (b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n"),
    "cte_only": (b"Content-Transfer-Encoding: base64\r\nContent-ID: <a>\r\n\r\naGk=\r\n"),
    "ct_comment": (
        b'Content-Type: text/plain (comment); charset="x\\"y"; name="a b"; e=\r\n'
        b"Content-Type: text/html\r\n"
        b"Content-Disposition: Attachment\r\n"
        b"Content-Language: EN\r\n"
        b"Content-Location:\r\n"
        b" http://x/\r\n"
        b"  y\r\n"
        b"\r\n"
        b"body\r\n"
    ),
    "nested_sizes": (
        b"Content-Type: multipart/mixed; boundary=outer\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n"
        b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"plain\r\n"
        b"--inner--\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"x\r\n"
        b"--outer--\r\n"
    ),
    "inner_ends_outer": (
        b"Content-Type: multipart/mixed; boundary=outer\r\n"
        b"\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n"
        b"\r\n"
        b"--inner\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"plain\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"x\r\n"
        b"--outer--\r\n"
    ),
    "boundary_in_header": (
        b"Content-Type: multipart/mixed; boundary=b\r\n"
        b"\r\n"
        b"--b\r\n"
        b"Content-Type: text/plain\r\n"
        b"X-A: 1\r\n"
        b"--b\r\n"
        b"\r\n"
        b"y\r\n"
        b"--b--\r\n"
    ),
    "rfc822_notmime": (
        b"Content-Type: message/rfc822\r\n"
        b"MIME-Version: 1.0\r\n"
        b"\r\n"
        b"Subject: inner\r\n"
        b"Content-Type: multipart/mixed; boundary=z\r\n"
        b"\r\n"
        b"--z\r\n"
        b"\r\n"
        b"q\r\n"
        b"--z--\r\n"
    ),
    "digest_default": (
        b"Content-Type: multipart/digest; boundary=d\r\n"
        b"\r\n"
        b"--d\r\n"
        b"Content-Type: multipart/mixed; boundary=e\r\n"
        b"\r\n"
        b"--e\r\n"
        b"\r\n"
        b"in e\r\n"
        b"--e--\r\n"
        b"--d--\r\n"
    ),
    "params_2231": (
        b'Content-Type: application/x; a*1="one"; a*0="zero"; '
        b"b*0*=utf-8''%41; b*2=x; c*=''x; Name=\"N\"\r\n"
        b"\r\n"
        b"x\r\n"
    ),
    "empty_ct": (b"Content-Type: \r\n\r\nx\r\n"),
    "ct_slash": (b"Content-Type: text/\r\n\r\nx\r\n"),
    "ct_badparam": (b"Content-Type: text/plain; charset\r\n\r\nx\r\n"),
    "md5_lang": (
        b"Content-Type: text/plain\r\n"
        b"Content-MD5:  abc \r\n"
        b"Content-Language: en-US , fr\r\n"
        b"Content-Description: \xc3\xa9 desc\r\n"
        b"Content-ID:  <x> \r\n"
        b"\r\n"
        b"x\r\n"
    ),
    "empty_date_subject": (
        b"Date:\r\n"
        b"Subject:\r\n"
        b"From: user\r\n"
        b'To: "joe  smith"@x.test, "a   b" <q@x.test>\r\n'
        b"\r\n"
        b"x\r\n"
    ),
    "text_no_charset": (
        b"Content-Type: text/plain; format=flowed; delsp=yes\r\n"
        b"Content-Transfer-Encoding: base64 (comment)\r\n"
        b"\r\n"
        b"eA==\r\n"
    ),
    "disp_params": (
        b"Content-Type: image/gif\r\n"
        b"Content-Disposition: inline;\r\n"
        b' filename="a.gif"; creation-date="Wed, 12 Feb 1997 16:29:51 -0500"\r\n'
        b"Content-Language: (c) en\r\n"
        b"\r\n"
        b"GIF\r\n"
    ),
    "digest_nested_rfc822": (
        b"Content-Type: multipart/mixed; boundary=a\r\n"
        b"\r\n"
        b"--a\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n"
        b"Subject: inner\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n"
        b"Subject: innermost\r\n"
        b"\r\n"
        b"deep\r\n"
        b"--a--\r\n"
    ),
    "repeated_fields": (
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=a\r\n"
        b"Content-ID: <first>\r\nContent-ID: <second>\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"Content-Disposition: inline\r\nContent-Disposition: attachment\r\n"
        b"Content-Description: one\r\nContent-Description: two\r\n"
        b"Content-Language: en\r\nContent-Language: fr\r\n"
        b"Content-Location: a\r\nContent-Location: b\r\nContent-MD5: x\r\nContent-MD5: y\r\n"
        b"Content-Type: text/html\r\nFrom: a@b\r\nFrom: c@d\r\n"
        b"Message-ID: <1>\r\nMessage-ID: <2>\r\n\r\nx\r\n"
    ),
    "group_unterminated": (
        b'To: Team: a@b, c@d\r\nCc: a@b c@d\r\nBcc: "unterminated <x@y>\r\n\r\n'
    ),
}
