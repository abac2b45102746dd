/* Wall screen (/wall): the parts that must keep working without the server.
   - rotate: next view of ?views= (the server renders it on the next request);
   - tick: the clock in the city's timezone, every second, and the "server unreachable"
     banner when no refresh has come back for config.offline_after_ms. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  wall: {
    rotate: function (n, config, view) {
      if (!config || !config.views || config.views.length < 2) {
        return window.dash_clientside.no_update;
      }
      var i = config.views.indexOf(view);
      return config.views[(i + 1) % config.views.length];
    },
    tick: function (n, heartbeat, config) {
      var state = window.__citydashWall || (window.__citydashWall = {lastOk: Date.now(), beat: null});
      if (heartbeat !== state.beat) {  // a refresh came back from the server
        state.beat = heartbeat;
        state.lastOk = Date.now();
      }
      if (!config) {
        return [window.dash_clientside.no_update, "", "wall-banner wall-hidden"];
      }
      var fmt = function (ms) {
        try {
          return new Intl.DateTimeFormat(config.locale, {
            timeZone: config.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
          }).format(new Date(ms));
        } catch (e) {
          return new Date(ms).toISOString().substring(11, 19);
        }
      };
      var clock = fmt(Date.now());
      if (Date.now() - state.lastOk > config.offline_after_ms) {
        return [clock, config.offline_text.replace("{time}", fmt(state.lastOk)), "wall-banner wall-offline"];
      }
      return [clock, "", "wall-banner wall-hidden"];
    }
  }
});
