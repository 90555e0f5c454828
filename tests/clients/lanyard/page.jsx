// use-lanyard 1.7.0 pointed at a lantern server: `?mode=ws|rest&id=<user>&host=127.0.0.1:<port>`.
// The presence it holds is written into #presence (its JSON) and #status (`data-status`).
import { createRoot } from "react-dom/client";
import { useLanyard, useLanyardWS } from "use-lanyard";

const query = new URLSearchParams(location.search);
const api = { hostname: query.get("host"), secure: false };
const id = query.get("id");

function Shown({ data, error }) {
  return (
    <>
      <p id="status" data-status={data ? data.discord_status : error ? "error" : "loading"}>
        {data ? data.discord_status : error ? `${error.code} ${error.message}` : "loading"}
      </p>
      <pre id="presence">{data ? JSON.stringify(data) : ""}</pre>
    </>
  );
}

function Socket() {
  const data = useLanyardWS(id, { api });
  return <Shown data={data} />;
}

function Rest() {
  const { data, error, revalidate } = useLanyard(id, { api });
  return (
    <>
      <Shown data={data} error={error} />
      <button id="revalidate" onClick={() => revalidate()}>revalidate</button>
    </>
  );
}

createRoot(document.getElementById("root")).render(query.get("mode") === "rest" ? <Rest /> : <Socket />);
