"use strict";
// One Zigbee door lock as the fake coordinator plays it: its PIN users and the faults a test asks
// for. It speaks only what lockgate needs of the ZCL Door Lock cluster (closuresDoorLock, 0x0101):
// setPinCode, clearPinCode and getPinCode, answered with the frames a Yale YRD226 sends, plus the
// unsolicited programming and operation event notifications. Everything above the frames
// (herdsman's request matching, the converters, Zigbee2MQTT's state cache) is the real code.

// ZCL user status and event codes, as the converters decode them.
const USER_STATUS = {available: 0, enabled: 1, disabled: 3};
const UNSUPPORTED = 0xff; // what a lock answers for a user it does not have
const SOURCE = {keypad: 0, rf: 1, manual: 2};
const PROGRAM_EVENT = {pin_code_added: 2, pin_code_deleted: 3, pin_code_changed: 4};
// ZCL Operation Event Notification codes (the converters' lock_operation_event lookup).
const OPERATION_EVENT = {lock: 1, unlock: 2, unlock_failure_invalid_pin_or_id: 5, auto_lock: 10, manual_unlock: 14};
const NO_USER = 0xffff; // the user id of an operation no user's PIN made
// ZCL lockState after each operation that moves the bolt: 1 locked, 2 unlocked.
const LOCK_STATE_AFTER = {lock: 1, auto_lock: 1, unlock: 2, manual_unlock: 2};
const LOCK_STATE = 0x0000; // the Door Lock cluster's lockState attribute
const ENUM8 = 0x30;
const STATUS = {success: 0, failure: 1, duplicate: 3};

// The faults a test can switch on, and their neutral values. Counters count down per request.
const NO_FAULTS = {
    delay_ms: 0, // before every answer
    write_delay_ms: 0, // a write takes this long to land (and be answered); reads answer meanwhile
    silent: false, // answer nothing at all, not even events: a lock out of radio range
    drop: 0, // leave the next n requests unanswered (herdsman times out)
    drop_commands: null, // ... only requests of these command names (null: any)
    refuse: 0, // answer the next n writes with refuse_status, and do not apply them
    refuse_status: STATUS.duplicate,
    ignore: 0, // answer the next n writes with success, and do not apply them
    userstatus_ff: 0, // answer the next n getPinCode with userstatus 0xFF
    rf_events: true, // report the gateway's own writes as programming events (source rf)
};

class FakeLock {
    constructor({friendly_name, ieee, nwk, users}) {
        this.name = friendly_name;
        this.ieee = ieee;
        this.nwk = nwk;
        this.capacity = users; // the lock's real user count; its definition may claim more
        this.reset({});
    }

    /** Back to a lock holding `codes` (user -> PIN), without faults or history. */
    reset(codes, faults = {}) {
        this.users = new Map();
        for (const [user, pin] of Object.entries(codes)) {
            this.users.set(Number(user), {status: USER_STATUS.enabled, type: 0, pin});
        }
        this.faults = {...NO_FAULTS, ...faults};
        this.lockState = 1; // locked
        this.requests = []; // [command, userid] of every request heard, for the test to check
    }

    snapshot() {
        const users = {};
        for (const [user, entry] of this.users) users[user] = entry;
        return {users, faults: this.faults, requests: this.requests};
    }

    /** Whether a request goes unanswered; counts it off when it does. */
    drops(command) {
        if (this.faults.silent) return true;
        const only = this.faults.drop_commands;
        if (this.faults.drop > 0 && (only === null || only.includes(command))) {
            this.faults.drop -= 1;
            return true;
        }
        return false;
    }

    /**
     * A request frame's command and payload in; the frames the lock sends back out, as
     * [command name, payload] pairs: the response first, then any event notification.
     */
    handle(command, payload) {
        this.requests.push([command, payload.userid]);
        if (this.drops(command)) return [];
        switch (command) {
            case "setPinCode":
                return this.write("setPinCodeRsp", payload.userid, () => this.set(payload));
            case "clearPinCode":
                return this.write("clearPinCodeRsp", payload.userid, () => this.clear(payload.userid));
            case "getPinCode":
                return [["getPinCodeRsp", this.read(payload.userid)]];
            default:
                return null; // not a door lock request this lock knows: the caller decides
        }
    }

    write(response, user, apply) {
        let status;
        let event = null;
        if (this.faults.refuse > 0) {
            this.faults.refuse -= 1;
            status = this.faults.refuse_status;
        } else if (this.faults.ignore > 0) {
            this.faults.ignore -= 1;
            status = STATUS.success;
        } else {
            [status, event] = apply();
        }
        const frames = [[response, {status}]];
        if (event !== null && this.faults.rf_events) {
            frames.push(this.programmingEvent(SOURCE.rf, event, user));
        }
        return frames;
    }

    set({userid, userstatus, usertype, pincodevalue}) {
        if (userid >= this.capacity) return [STATUS.failure, null];
        const pin = pincodevalue.toString();
        for (const [other, entry] of this.users) {
            // A Yale refuses a PIN another user already has.
            if (other !== userid && entry.pin === pin) return [STATUS.duplicate, null];
        }
        const before = this.users.get(userid);
        this.users.set(userid, {status: userstatus, type: usertype, pin});
        return [STATUS.success, before === undefined ? "pin_code_added" : "pin_code_changed"];
    }

    clear(userid) {
        if (userid >= this.capacity) return [STATUS.failure, null];
        this.users.delete(userid);
        return [STATUS.success, "pin_code_deleted"];
    }

    read(userid) {
        const entry = this.users.get(userid);
        if (this.faults.userstatus_ff > 0 || userid >= this.capacity) {
            if (userid < this.capacity) this.faults.userstatus_ff -= 1;
            return {userid, userstatus: UNSUPPORTED, usertype: UNSUPPORTED, pincodevalue: Buffer.alloc(0)};
        }
        if (entry === undefined) {
            return {userid, userstatus: USER_STATUS.available, usertype: UNSUPPORTED, pincodevalue: Buffer.alloc(0)};
        }
        return {userid, userstatus: entry.status, usertype: entry.type, pincodevalue: Buffer.from(entry.pin)};
    }

    /** A PIN typed in at the keypad's programming mode (`pin` null: deleted). */
    keypad(user, pin) {
        const before = this.users.get(user);
        let event;
        if (pin === null) {
            this.users.delete(user);
            event = "pin_code_deleted";
        } else {
            this.users.set(user, {status: USER_STATUS.enabled, type: 0, pin});
            event = before === undefined ? "pin_code_added" : "pin_code_changed";
        }
        return [this.programmingEvent(SOURCE.keypad, event, user)];
    }

    /** Someone opened the door with `user`'s PIN at the keypad. */
    unlock(user) {
        return this.operate("unlock", "keypad", user);
    }

    /**
     * The door operated: `event` (a name of OPERATION_EVENT) from `source` (of SOURCE), by
     * `user` (null: no user, as for a wrong PIN or the thumb turn), as a Yale reports it: the
     * Operation Event Notification, then, with `report_state`, the lockState attribute report
     * (reporting is configured on lockState with a minimum interval of 0).
     */
    operate(event, source, user, report_state = false) {
        const pin = user === null ? "" : (this.users.get(user)?.pin ?? "");
        const frames = [
            [
                "operationEventNotification",
                {
                    opereventsrc: SOURCE[source],
                    opereventcode: OPERATION_EVENT[event],
                    userid: user === null ? NO_USER : user,
                    pin: Buffer.from(pin),
                    zigbeelocaltime: 0,
                    data: "",
                },
            ],
        ];
        if (event in LOCK_STATE_AFTER) this.lockState = LOCK_STATE_AFTER[event];
        if (report_state) {
            frames.push(["report", [{attrId: LOCK_STATE, dataType: ENUM8, attrData: this.lockState}], "global"]);
        }
        return frames;
    }

    programmingEvent(source, event, user) {
        const entry = this.users.get(user);
        return [
            "programmingEventNotification",
            {
                programeventsrc: source,
                programeventcode: PROGRAM_EVENT[event],
                userid: user,
                pin: Buffer.from(entry?.pin ?? ""),
                usertype: entry?.type ?? UNSUPPORTED,
                userstatus: entry?.status ?? USER_STATUS.available,
                zigbeelocaltime: 0,
                data: "",
            },
        ];
    }
}

module.exports = {FakeLock};
